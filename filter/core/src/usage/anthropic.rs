//! Usage in Anthropic Messages responses: the JSON `usage` object, or in a
//! stream `message_start` (input side) and `message_delta` (cumulative).

use hubgate_wire::Usage;
use serde::Deserialize;

/// The stream events usage, the model and the end are read from.
pub const USAGE_EVENTS: &[&str] = &["message_start", "message_delta", "message_stop"];

/// The stream event carrying the output as it is generated; measured in
/// place with [`delta_text_bytes`], never parsed.
pub const DELTA_EVENT: &str = "content_block_delta";

/// The string fields of a delta that are output: text, a tool call's
/// input, thinking.
const DELTA_FIELDS: [&[u8]; 3] = [b"\"text\":", b"\"partial_json\":", b"\"thinking\":"];

#[derive(Deserialize, Default)]
struct UsageJson {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    cache_creation: Option<CacheCreationJson>,
}

#[derive(Deserialize, Default)]
struct CacheCreationJson {
    ephemeral_5m_input_tokens: Option<u64>,
    ephemeral_1h_input_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct MessageJson {
    model: Option<String>,
    usage: Option<UsageJson>,
}

#[derive(Deserialize)]
struct EventJson {
    #[serde(rename = "type")]
    kind: Option<String>,
    message: Option<MessageJson>,
    usage: Option<UsageJson>,
}

impl UsageJson {
    /// Writes the fields this object carries over `usage`; absent fields
    /// keep their value (stream events carry cumulative totals).
    fn apply(&self, usage: &mut Usage) {
        if let Some(v) = self.input_tokens {
            usage.input_tokens = v;
        }
        if let Some(v) = self.output_tokens {
            usage.output_tokens = v;
        }
        if let Some(v) = self.cache_read_input_tokens {
            usage.cache_read_tokens = v;
        }
        match &self.cache_creation {
            Some(split) if split.ephemeral_5m_input_tokens.is_some() || split.ephemeral_1h_input_tokens.is_some() => {
                usage.cache_creation_5m_tokens = split.ephemeral_5m_input_tokens.unwrap_or(0);
                usage.cache_creation_1h_tokens = split.ephemeral_1h_input_tokens.unwrap_or(0);
            }
            _ => {
                // A total without its split (e.g. in `message_delta`): keep
                // the 1 h part already known, the rest is 5 m.
                if let Some(total) = self.cache_creation_input_tokens {
                    let one_hour = usage.cache_creation_1h_tokens.min(total);
                    usage.cache_creation_1h_tokens = one_hour;
                    usage.cache_creation_5m_tokens = total - one_hour;
                }
            }
        }
    }
}

/// Usage and model from a complete non-streaming response body.
pub fn from_json(body: &[u8]) -> (Option<Usage>, Option<String>) {
    match serde_json::from_slice::<MessageJson>(body) {
        Ok(m) => {
            let usage = m.usage.map(|u| {
                let mut usage = Usage::default();
                u.apply(&mut usage);
                usage
            });
            (usage, m.model)
        }
        Err(_) => (None, None),
    }
}

/// Accumulates usage over the events of one stream.
#[derive(Debug, Default, Clone)]
pub struct StreamState {
    pub usage: Usage,
    pub model: Option<String>,
    pub saw_usage: bool,
    /// `message_delta` brought the final output count.
    pub saw_final_usage: bool,
    pub saw_stop: bool,
    /// Output bytes of the unnamed delta events seen (named ones are
    /// measured by the scanner).
    pub delta_bytes: u64,
}

impl StreamState {
    pub fn on_event(&mut self, event: &str, data: &[u8]) {
        if event.is_empty() && contains(data, b"\"content_block_delta\"") {
            self.delta_bytes = self.delta_bytes.saturating_add(delta_text_bytes(data));
            return;
        }
        let interesting = USAGE_EVENTS.contains(&event)
            || (event.is_empty() && contains(data, b"\"message_"));
        if !interesting {
            return;
        }
        let Ok(parsed) = serde_json::from_slice::<EventJson>(data) else {
            return;
        };
        match parsed.kind.as_deref() {
            Some("message_start") => {
                if let Some(message) = parsed.message {
                    self.model = message.model.or(self.model.take());
                    if let Some(u) = message.usage {
                        u.apply(&mut self.usage);
                        self.saw_usage = true;
                    }
                }
            }
            Some("message_delta") => {
                if let Some(u) = parsed.usage {
                    self.saw_final_usage |= u.output_tokens.is_some();
                    u.apply(&mut self.usage);
                    self.saw_usage = true;
                }
            }
            Some("message_stop") => self.saw_stop = true,
            _ => {}
        }
    }

    /// The end of the stream; `measured`: output characters of the named
    /// delta events (measured by the scanner).
    pub fn finish(mut self, measured: u64) -> super::StreamEnd {
        let output_chars = measured.saturating_add(self.delta_bytes);
        // A stream cut before `message_delta` still shows `message_start`'s
        // placeholder output count.
        let output_estimated = self.saw_usage && !self.saw_final_usage;
        if output_estimated {
            self.usage.output_tokens = self.usage.output_tokens.max(output_chars.div_ceil(4));
        }
        super::StreamEnd {
            usage: self.saw_usage.then_some(self.usage),
            model: self.model,
            incomplete: !self.saw_stop,
            output_estimated,
            output_chars,
        }
    }
}

use super::contains;

/// Characters of output in one `content_block_delta` data line: the length
/// of its text, tool-input or thinking string, an escape counting as one
/// character (UTF-8 counts by bytes). 0 when the line has none.
pub fn delta_text_bytes(data: &[u8]) -> u64 {
    super::string_chars(data, &DELTA_FIELDS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Endpoint;
    use crate::usage::ResponseMeter;

    const STREAM: &str = concat!(
        "event: message_start\n",
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5-20250929\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":1200,\"cache_creation_input_tokens\":300,\"cache_read_input_tokens\":4000,\"cache_creation\":{\"ephemeral_5m_input_tokens\":100,\"ephemeral_1h_input_tokens\":200},\"output_tokens\":1}}}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: ping\n",
        "data: {\"type\":\"ping\"}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hé \\u00e9 message_delta\"}}\n\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: message_delta\n",
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":345}}\n\n",
        "event: message_stop\n",
        "data: {\"type\":\"message_stop\"}\n\n",
    );

    fn expected() -> Usage {
        Usage {
            input_tokens: 1200,
            output_tokens: 345,
            cache_creation_5m_tokens: 100,
            cache_creation_1h_tokens: 200,
            cache_read_tokens: 4000,
        }
    }

    fn meter(chunks: &[&[u8]]) -> crate::usage::Metered {
        let mut m = ResponseMeter::new(Endpoint::AnthropicMessages, "text/event-stream; charset=utf-8");
        for c in chunks {
            m.feed(c);
        }
        m.finish()
    }

    #[test]
    fn stream_usage_split_at_every_byte_boundary() {
        let bytes = STREAM.as_bytes();
        for cut in 0..=bytes.len() {
            let r = meter(&[&bytes[..cut], &bytes[cut..]]);
            assert_eq!(r.usage, Some(expected()), "cut at {cut}");
            assert_eq!(r.model.as_deref(), Some("claude-sonnet-4-5-20250929"));
            assert!(!r.incomplete);
        }
    }

    #[test]
    fn stream_usage_one_byte_at_a_time() {
        let chunks: Vec<&[u8]> = STREAM.as_bytes().chunks(1).collect();
        assert_eq!(meter(&chunks).usage, Some(expected()));
    }

    #[test]
    fn cut_stream_keeps_what_was_seen_and_is_flagged() {
        let cut = STREAM.find("event: message_delta").unwrap();
        let r = meter(&[&STREAM.as_bytes()[..cut]]);
        assert!(r.incomplete);
        assert!(r.output_estimated);
        let u = r.usage.unwrap();
        // 19 characters of text seen: 5 tokens, not message_start's 1.
        assert_eq!((u.input_tokens, u.output_tokens, u.cache_read_tokens), (1200, 5, 4000));
        assert!(!meter(&[STREAM.as_bytes()]).output_estimated);
    }

    /// A stream cut after several text and tool-input deltas, named or not.
    #[test]
    fn cut_stream_output_is_estimated_from_every_delta_seen() {
        let start = STREAM.split("event: content_block_start").next().unwrap();
        let delta = |kind: &str, field: &str, value: &str| {
            format!("{{\"type\":\"content_block_delta\",\"index\":1,\"delta\":{{\"type\":\"{kind}\",\"{field}\":\"{value}\"}}}}")
        };
        let mut stream = start.to_string();
        for _ in 0..5 {
            stream += &format!("event: content_block_delta\ndata: {}\n\n", delta("text_delta", "text", "twelve chars"));
        }
        stream += &format!("event: content_block_delta\ndata: {}\n\n", delta("input_json_delta", "partial_json", "{\\\"path\\\": \\\"a\\\"}"));
        stream += &format!("event: content_block_delta\ndata: {}\n\n", delta("thinking_delta", "thinking", "hmm"));
        // The same events without their names (some proxies drop them).
        stream += &format!("data: {}\n\n", delta("text_delta", "text", "\\u00e9t\\u00e9"));
        stream += &format!("event: content_block_delta\ndata: {}\n\n", delta("signature_delta", "signature", "c2lnbmF0dXJl"));
        // 60 + 13 (the tool input, unescaped) + 3 + 3 = 79 characters: 20 tokens.
        let bytes = stream.as_bytes();
        for cut in 0..=bytes.len() {
            let r = meter(&[&bytes[..cut], &bytes[cut..]]);
            assert_eq!(r.usage.map(|u| u.output_tokens), Some(20), "cut at {cut}");
            assert!(r.incomplete && r.output_estimated);
        }
    }

    #[test]
    fn delta_text_is_measured_without_parsing() {
        let cases: [(&[u8], u64); 6] = [
            (br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}"#, 5),
            (br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text": "a\"b\n"}}"#, 4),
            (br#"{"delta":{"type":"input_json_delta","partial_json":"{\"x\":1}"}}"#, 7),
            (br#"{"delta":{"type":"text_delta","text":"\ud83d\ude00!"}}"#, 3),
            (br#"{"delta":{"type":"text_delta","text":"unterminated"#, 12),
            (br#"{"type":"ping"}"#, 0),
        ];
        for (data, want) in cases {
            assert_eq!(delta_text_bytes(data), want, "{}", String::from_utf8_lossy(data));
        }
    }

    #[test]
    fn delta_total_without_split_keeps_the_1h_part() {
        let start = concat!(
            "event: message_start\n",
            "data: {\"type\":\"message_start\",\"message\":{\"model\":\"m\",\"usage\":{\"input_tokens\":10,\"cache_creation_input_tokens\":300,\"cache_creation\":{\"ephemeral_5m_input_tokens\":100,\"ephemeral_1h_input_tokens\":200},\"output_tokens\":1}}}\n\n",
            "event: message_delta\n",
            "data: {\"type\":\"message_delta\",\"delta\":{},\"usage\":{\"output_tokens\":9,\"cache_creation_input_tokens\":300,\"input_tokens\":10}}\n\n",
            "event: message_stop\n",
            "data: {\"type\":\"message_stop\"}\n\n",
        );
        let u = meter(&[start.as_bytes()]).usage.unwrap();
        assert_eq!((u.cache_creation_5m_tokens, u.cache_creation_1h_tokens, u.output_tokens), (100, 200, 9));
    }

    #[test]
    fn json_cache_creation_without_split_counts_as_5m() {
        let (u, model) = from_json(br#"{"model":"m","usage":{"input_tokens":7,"output_tokens":2,"cache_creation_input_tokens":50,"cache_read_input_tokens":null}}"#);
        let u = u.unwrap();
        assert_eq!((u.cache_creation_5m_tokens, u.cache_creation_1h_tokens, u.cache_read_tokens), (50, 0, 0));
        assert_eq!(model.as_deref(), Some("m"));
    }

    #[test]
    fn json_without_usage_or_invalid() {
        assert_eq!(from_json(br#"{"type":"error"}"#), (None, None));
        assert_eq!(from_json(b"not json"), (None, None));
    }
}
