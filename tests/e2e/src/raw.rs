//! A raw HTTP/1.1 client over TCP, for what well-behaved clients never do:
//! stall mid-request, trickle bytes, send paths as written, come from a
//! chosen loopback address.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

pub struct RawConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Lowercase names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

impl RawConn {
    /// Connects to `addr`, from `from` when given (any 127.x.y.z address is
    /// a local address on Linux).
    pub async fn connect(addr: SocketAddr, from: Option<IpAddr>) -> Result<RawConn> {
        let socket = TcpSocket::new_v4()?;
        if let Some(ip) = from {
            socket.bind(SocketAddr::new(ip, 0)).with_context(|| format!("binding {ip}"))?;
        }
        let stream = socket.connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(RawConn { stream, buf: Vec::new() })
    }

    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Reads one response (headers and a content-length or chunked body);
    /// `None` if the connection closed or nothing complete arrived in time.
    pub async fn response(&mut self, timeout: Duration) -> Option<RawResponse> {
        tokio::time::timeout(timeout, self.read_response()).await.ok().and_then(Result::ok)
    }

    async fn fill(&mut self) -> Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed");
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    async fn read_response(&mut self) -> Result<RawResponse> {
        let head_end = loop {
            if let Some(at) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
            self.fill().await?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).to_string();
        self.buf.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let find = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let body = if let Some(len) = find("content-length").and_then(|v| v.parse::<usize>().ok()) {
            while self.buf.len() < len {
                self.fill().await?;
            }
            self.buf.drain(..len).collect()
        } else if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            let mut body = Vec::new();
            loop {
                let line_end = loop {
                    if let Some(at) = self.buf.windows(2).position(|w| w == b"\r\n") {
                        break at;
                    }
                    self.fill().await?;
                };
                let size_text = String::from_utf8_lossy(&self.buf[..line_end]).to_string();
                let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)?;
                self.buf.drain(..line_end + 2);
                while self.buf.len() < size + 2 {
                    self.fill().await?;
                }
                body.extend(self.buf.drain(..size));
                self.buf.drain(..2);
                if size == 0 {
                    break body;
                }
            }
        } else {
            Vec::new()
        };
        Ok(RawResponse { status, headers, body })
    }

    /// True if the peer closes the connection (or resets it) within
    /// `timeout`; bytes that arrive before are discarded.
    pub async fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut chunk = [0u8; 4096];
        loop {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => return false,
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
            }
        }
    }
}

/// Request head for `POST path` with the given extra header lines.
pub fn head(method: &str, path: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nhost: hubgate\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}
