//! Reading token usage from upstream responses, chunk by chunk, without
//! holding the response back (SSE is scanned with a byte carry-over).

pub mod anthropic;
pub mod sse;

use hubgate_wire::Usage;

use crate::api::Endpoint;
use sse::SseScanner;

/// JSON bodies larger than this are not kept for usage extraction.
const MAX_JSON_BODY: usize = 8 * 1024 * 1024;

/// What the meter saw once the response ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metered {
    /// `None` when the response carried no usage at all.
    pub usage: Option<Usage>,
    /// The model the provider reported, if any.
    pub model: Option<String>,
    /// A stream ended without its final event (cut by client or upstream).
    pub incomplete: bool,
    pub response_bytes: u64,
    /// This response format's usage is not read yet (only Anthropic's is).
    pub unsupported: bool,
    /// The stream ended before its final output count: output tokens are
    /// estimated from the output seen (about four characters a token).
    pub output_estimated: bool,
}

pub struct ResponseMeter {
    endpoint: Endpoint,
    sse: Option<SseScanner>,
    json: Vec<u8>,
    json_overflow: bool,
    state: anthropic::StreamState,
    bytes: u64,
}

impl ResponseMeter {
    fn reads_usage(&self) -> bool {
        self.endpoint == Endpoint::AnthropicMessages
    }

    /// Whether `feed` needs the chunks' bytes; if not, `skip` their length
    /// (the host need not copy them out).
    pub fn reads_body(&self) -> bool {
        self.reads_usage()
    }

    /// Counts `len` bytes of a chunk that is not read.
    pub fn skip(&mut self, len: usize) {
        self.bytes += len as u64;
    }

    pub fn new(endpoint: Endpoint, content_type: &str) -> ResponseMeter {
        let is_sse = content_type.trim_start().to_ascii_lowercase().starts_with("text/event-stream");
        ResponseMeter {
            endpoint,
            sse: is_sse.then(|| {
                SseScanner::only(anthropic::USAGE_EVENTS).measuring(anthropic::DELTA_EVENT, anthropic::delta_text_bytes)
            }),
            json: Vec::new(),
            json_overflow: false,
            state: anthropic::StreamState::default(),
            bytes: 0,
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        self.bytes += chunk.len() as u64;
        if !self.reads_usage() {
            return;
        }
        match &mut self.sse {
            Some(scanner) => {
                let state = &mut self.state;
                scanner.feed(chunk, |event, data| state.on_event(event, data));
            }
            None => {
                if self.json.len() + chunk.len() > MAX_JSON_BODY {
                    self.json_overflow = true;
                    self.json = Vec::new();
                } else if !self.json_overflow {
                    self.json.extend_from_slice(chunk);
                }
            }
        }
    }

    pub fn finish(mut self) -> Metered {
        let bytes = self.bytes;
        if !self.reads_usage() {
            return Metered { response_bytes: bytes, unsupported: true, ..Metered::default() };
        }
        match self.sse.take() {
            Some(mut scanner) => {
                let state = &mut self.state;
                scanner.finish(|event, data| state.on_event(event, data));
                let mut s = self.state;
                // A stream cut before `message_delta` still shows
                // `message_start`'s placeholder output count.
                let output_estimated = s.saw_usage && !s.saw_final_usage;
                if output_estimated {
                    let seen = scanner.measured.saturating_add(s.delta_bytes);
                    s.usage.output_tokens = s.usage.output_tokens.max(seen.div_ceil(4));
                }
                Metered {
                    usage: s.saw_usage.then_some(s.usage),
                    model: s.model,
                    incomplete: !s.saw_stop,
                    response_bytes: bytes,
                    unsupported: false,
                    output_estimated,
                }
            }
            None => {
                let (usage, model) =
                    if self.json_overflow { (None, None) } else { anthropic::from_json(&self.json) };
                Metered { usage, model, response_bytes: bytes, ..Metered::default() }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_response_split_anywhere() {
        let body = br#"{"id":"msg_1","type":"message","model":"claude-sonnet-4-5","usage":{"input_tokens":10,"output_tokens":5,"cache_read_input_tokens":3}}"#;
        for cut in 0..=body.len() {
            let mut m = ResponseMeter::new(Endpoint::AnthropicMessages, "application/json");
            m.feed(&body[..cut]);
            m.feed(&body[cut..]);
            let r = m.finish();
            let u = r.usage.unwrap();
            assert_eq!((u.input_tokens, u.output_tokens, u.cache_read_tokens), (10, 5, 3));
            assert_eq!(r.model.as_deref(), Some("claude-sonnet-4-5"));
            assert_eq!(r.response_bytes, body.len() as u64);
        }
    }

    #[test]
    fn other_formats_are_reported_unsupported_not_cut() {
        let mut m = ResponseMeter::new(Endpoint::OpenAiChat, "text/event-stream");
        m.feed(b"data: {\"usage\":{\"prompt_tokens\":1}}\n\n");
        let r = m.finish();
        assert_eq!(r.usage, None);
        assert!(r.unsupported);
        assert!(!r.incomplete);
    }
}
