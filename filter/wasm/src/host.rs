//! Wrappers over proxy-wasm hostcalls that turn host errors into values. The
//! SDK's trait helpers unwrap them, and its string readers unwrap UTF-8; a
//! panic would kill the VM and every later request on its worker. (The raw
//! hostcalls still panic on statuses the ABI does not define.)

use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, Bytes, MapType, Status};

/// Host clock, unix milliseconds.
pub fn now_ms() -> i64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Host clock, unix nanoseconds (for unique ids and seeds).
pub fn now_ns() -> u128 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos())
}

/// All request headers. Values are read as bytes: the SDK's string variant
/// unwraps UTF-8 and a client sending a Latin-1 header would panic the VM.
pub fn request_headers() -> Vec<(String, String)> {
    hostcalls::get_map_bytes(MapType::HttpRequestHeaders)
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
        .collect()
}

fn map_value(map: MapType, name: &str) -> Option<String> {
    hostcalls::get_map_value_bytes(map, name)
        .ok()
        .flatten()
        .map(|v| String::from_utf8_lossy(&v).into_owned())
}

pub fn response_header(name: &str) -> Option<String> {
    map_value(MapType::HttpResponseHeaders, name)
}

pub fn set_request_header(name: &str, value: Option<&str>) {
    if let Err(e) = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value) {
        log::warn!("cannot set request header {name}: {e:?}");
    }
}

pub fn property(path: &[&str]) -> Option<String> {
    hostcalls::get_property(path.to_vec())
        .ok()
        .flatten()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

pub fn buffer(kind: BufferType, size: usize) -> Bytes {
    hostcalls::get_buffer(kind, 0, size).ok().flatten().unwrap_or_default()
}

pub fn set_response_header(name: &str, value: Option<&str>) {
    if let Err(e) = hostcalls::set_map_value(MapType::HttpResponseHeaders, name, value) {
        log::warn!("cannot set response header {name}: {e:?}");
    }
}

/// Replaces the first `size` bytes of the (buffered) response body.
pub fn replace_response_body(size: usize, body: &[u8]) {
    if let Err(e) = hostcalls::set_buffer(BufferType::HttpResponseBody, 0, size, body) {
        log::warn!("cannot replace the response body: {e:?}");
    }
}

pub fn call_response_status() -> Option<u16> {
    map_value(MapType::HttpCallResponseHeaders, ":status").and_then(|s| s.parse().ok())
}

pub fn send_reply(status: u16, headers: &[(String, String)], body: &[u8]) {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    if let Err(e) = hostcalls::send_http_response(u32::from(status), headers, Some(body)) {
        log::error!("cannot send local reply {status}: {e:?}");
    }
}

pub fn resume_request() {
    if let Err(e) = hostcalls::resume_http_request() {
        log::warn!("cannot resume request: {e:?}");
    }
}

/// Shared data (per Envoy process, all worker VMs): value and CAS token.
pub fn shared_get(key: &str) -> (Option<Bytes>, Option<u32>) {
    hostcalls::get_shared_data(key).unwrap_or((None, None))
}

pub fn shared_set(key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status> {
    hostcalls::set_shared_data(key, Some(value), cas)
}

/// Read-modify-write of a shared value with CAS, retried a few times.
/// Returns the value written, or `None` if every attempt lost the race.
pub fn shared_update<T>(key: &str, mut update: impl FnMut(Option<&[u8]>) -> (T, Vec<u8>)) -> Option<T> {
    for _ in 0..4 {
        let (current, cas) = shared_get(key);
        let (result, next) = update(current.as_deref());
        match shared_set(key, &next, cas) {
            Ok(()) => return Some(result),
            Err(Status::CasMismatch) => continue,
            Err(e) => {
                log::warn!("shared data {key}: {e:?}");
                return None;
            }
        }
    }
    None
}

/// Starts an HTTP callout; the answer arrives in `on_http_call_response`.
pub fn dispatch(cluster: &str, headers: Vec<(&str, &str)>, body: Option<&[u8]>, timeout_ms: u64) -> Result<u32, Status> {
    hostcalls::dispatch_http_call(cluster, headers, body, vec![], Duration::from_millis(timeout_ms))
}
