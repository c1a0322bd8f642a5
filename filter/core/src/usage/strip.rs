//! Takes the usage chunk hubgate asked for (`guards::stream_usage`) out of a
//! Chat Completions stream on its way to the client. Complete events pass
//! as they arrive; only an event still incomplete at the end of a chunk is
//! held until the rest of it comes.

use super::contains;

#[derive(Default)]
pub struct UsageChunkFilter {
    carry: Vec<u8>,
}

/// The end of the first event in `bytes`: after its blank line.
fn event_end(bytes: &[u8]) -> Option<usize> {
    let lf = memchr::memmem::find(bytes, b"\n\n").map(|i| i + 2);
    let crlf = memchr::memmem::find(bytes, b"\r\n\r\n").map(|i| i + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn is_usage_chunk(event: &[u8]) -> bool {
    contains(event, b"\"choices\":[]") && contains(event, b"\"usage\":{")
}

impl UsageChunkFilter {
    /// What of `chunk` goes to the client now (`end`: the stream's last).
    pub fn filter(&mut self, chunk: &[u8], end: bool) -> Vec<u8> {
        let mut pending = std::mem::take(&mut self.carry);
        pending.extend_from_slice(chunk);
        let mut out = Vec::with_capacity(pending.len());
        let mut rest = pending.as_slice();
        while let Some(at) = event_end(rest) {
            let (event, tail) = rest.split_at(at);
            if !is_usage_chunk(event) {
                out.extend_from_slice(event);
            }
            rest = tail;
        }
        if end {
            if !is_usage_chunk(rest) {
                out.extend_from_slice(rest);
            }
        } else {
            self.carry = rest.to_vec();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &[u8] = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\n\
data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1}}\n\n\
data: [DONE]\n\n";

    #[test]
    fn the_usage_chunk_is_taken_out_wherever_the_stream_is_split() {
        let expected = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\ndata: [DONE]\n\n".to_vec();
        for cut in 0..=STREAM.len() {
            let mut f = UsageChunkFilter::default();
            let mut out = f.filter(&STREAM[..cut], false);
            out.extend(f.filter(&STREAM[cut..], true));
            assert_eq!(out, expected, "cut at {cut}");
        }
        let mut f = UsageChunkFilter::default();
        let mut out = Vec::new();
        for b in STREAM.chunks(1) {
            out.extend(f.filter(b, false));
        }
        out.extend(f.filter(b"", true));
        assert_eq!(out, expected);
    }

    #[test]
    fn complete_events_pass_at_once_and_a_cut_tail_at_the_end() {
        let mut f = UsageChunkFilter::default();
        assert_eq!(f.filter(b"data: a\n\ndata: b", false), b"data: a\n\n");
        assert_eq!(f.filter(b"c", true), b"data: bc");
    }
}
