//! Reading token usage from upstream responses, chunk by chunk, without
//! holding the response back (SSE is scanned with a byte carry-over).

pub mod anthropic;
pub mod gemini;
pub mod openai;
pub mod sse;
pub mod strip;

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
    /// This response's usage is not read (not a conversation endpoint).
    pub unsupported: bool,
    /// The stream ended before its final output count: output tokens are
    /// estimated from the output seen (about four characters a token).
    pub output_estimated: bool,
    /// Characters of output text seen in a stream (text, tool arguments,
    /// thinking), for estimates.
    pub output_chars: Option<u64>,
}

/// How a stream ended, as its format's reader saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamEnd {
    pub usage: Option<Usage>,
    pub model: Option<String>,
    pub incomplete: bool,
    pub output_estimated: bool,
    pub output_chars: u64,
}

impl StreamEnd {
    /// A stream cut before its end keeps the last usage seen, its output
    /// raised to what the output seen amounts to, flagged.
    fn new(mut usage: Option<Usage>, model: Option<String>, incomplete: bool, output_chars: u64) -> StreamEnd {
        let output_estimated = incomplete && usage.is_some();
        if let Some(u) = usage.as_mut().filter(|_| output_estimated) {
            u.output_tokens = u.output_tokens.max(output_chars.div_ceil(4));
        }
        StreamEnd { usage, model, incomplete, output_estimated, output_chars }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Anthropic,
    Chat,
    Responses,
    Gemini,
}

impl Format {
    fn of(endpoint: Endpoint) -> Option<Format> {
        match endpoint {
            Endpoint::AnthropicMessages => Some(Format::Anthropic),
            Endpoint::OpenAiChat => Some(Format::Chat),
            Endpoint::OpenAiResponses => Some(Format::Responses),
            Endpoint::Gemini { conversation: true, .. } => Some(Format::Gemini),
            _ => None,
        }
    }

    fn scanner(self) -> SseScanner {
        match self {
            Format::Anthropic => {
                SseScanner::only(anthropic::USAGE_EVENTS).measuring(anthropic::DELTA_EVENT, anthropic::delta_text_bytes)
            }
            Format::Responses => SseScanner::only(openai::RESPONSES_EVENTS)
                .measuring(openai::RESPONSES_DELTA_EVENT, openai::responses_delta_chars),
            Format::Chat | Format::Gemini => SseScanner::default(),
        }
    }

    fn read_json(self, body: &[u8]) -> (Option<Usage>, Option<String>) {
        match self {
            Format::Anthropic => anthropic::from_json(body),
            Format::Chat | Format::Responses => openai::from_json(body),
            Format::Gemini => gemini::from_json(body),
        }
    }
}

/// One stream's reader, by format.
enum Stream {
    Anthropic(anthropic::StreamState),
    Chat(openai::ChatStream),
    Responses(openai::ResponsesStream),
    Gemini(gemini::Stream),
}

impl Stream {
    fn new(format: Format) -> Stream {
        match format {
            Format::Anthropic => Stream::Anthropic(anthropic::StreamState::default()),
            Format::Chat => Stream::Chat(openai::ChatStream::default()),
            Format::Responses => Stream::Responses(openai::ResponsesStream::default()),
            Format::Gemini => Stream::Gemini(gemini::Stream::default()),
        }
    }

    fn on_event(&mut self, event: &str, data: &[u8]) {
        match self {
            Stream::Anthropic(s) => s.on_event(event, data),
            Stream::Chat(s) => s.on_event(event, data),
            Stream::Responses(s) => s.on_event(event, data),
            Stream::Gemini(s) => s.on_event(event, data),
        }
    }

    fn finish(self, measured: u64) -> StreamEnd {
        match self {
            Stream::Anthropic(s) => s.finish(measured),
            Stream::Chat(s) => s.finish(),
            Stream::Responses(s) => s.finish(measured),
            Stream::Gemini(s) => s.finish(),
        }
    }
}

pub struct ResponseMeter {
    format: Option<Format>,
    sse: Option<(SseScanner, Stream)>,
    json: Vec<u8>,
    json_overflow: bool,
    bytes: u64,
}

impl ResponseMeter {
    /// Whether `feed` needs the chunks' bytes; if not, `skip` their length
    /// (the host need not copy them out).
    pub fn reads_body(&self) -> bool {
        self.format.is_some()
    }

    /// Counts `len` bytes of a chunk that is not read.
    pub fn skip(&mut self, len: usize) {
        self.bytes += len as u64;
    }

    pub fn new(endpoint: Endpoint, content_type: &str) -> ResponseMeter {
        let is_sse = is_event_stream(content_type);
        let format = Format::of(endpoint);
        ResponseMeter {
            format,
            sse: format.filter(|_| is_sse).map(|f| (f.scanner(), Stream::new(f))),
            json: Vec::new(),
            json_overflow: false,
            bytes: 0,
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        self.bytes += chunk.len() as u64;
        if self.format.is_none() {
            return;
        }
        match &mut self.sse {
            Some((scanner, stream)) => scanner.feed(chunk, |event, data| stream.on_event(event, data)),
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
        let response_bytes = self.bytes;
        let Some(format) = self.format else {
            return Metered { response_bytes, unsupported: true, ..Metered::default() };
        };
        match self.sse.take() {
            Some((mut scanner, mut stream)) => {
                scanner.finish(|event, data| stream.on_event(event, data));
                let end = stream.finish(scanner.measured);
                Metered {
                    usage: end.usage,
                    model: end.model,
                    incomplete: end.incomplete,
                    response_bytes,
                    unsupported: false,
                    output_estimated: end.output_estimated,
                    output_chars: Some(end.output_chars),
                }
            }
            None => {
                let (usage, model) = if self.json_overflow { (None, None) } else { format.read_json(&self.json) };
                Metered { usage, model, response_bytes, ..Metered::default() }
            }
        }
    }
}

/// Whether a `content-type` is Server-Sent Events.
pub fn is_event_stream(content_type: &str) -> bool {
    content_type.trim_start().to_ascii_lowercase().starts_with("text/event-stream")
}

pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(haystack, needle).is_some()
}

/// Characters of the first JSON string value among `fields` (each given as
/// `"name":`) in `data`, an escape counting as one character (UTF-8 counts
/// by bytes). 0 when there is none.
pub fn string_chars(data: &[u8], fields: &[&[u8]]) -> u64 {
    let Some(start) = fields.iter().find_map(|field| {
        let at = memchr::memmem::find(data, field)? + field.len();
        let rest = data.get(at..)?;
        let quote = rest.iter().position(|b| !b.is_ascii_whitespace())?;
        (rest.get(quote) == Some(&b'"')).then_some(at + quote + 1)
    }) else {
        return 0;
    };
    let mut count = 0u64;
    let mut bytes = data.get(start..).unwrap_or_default().iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'"' => break,
            b'\\' => {
                // `\uXXXX` is one character, like the two-byte escapes.
                let hex_digits = if bytes.next() == Some(&b'u') { 4 } else { 0 };
                bytes.by_ref().take(hex_digits).for_each(drop);
            }
            _ => {}
        }
        count += 1;
    }
    count
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
    fn non_conversation_answers_are_not_read() {
        let mut m = ResponseMeter::new(Endpoint::AnthropicCountTokens, "application/json");
        assert!(!m.reads_body());
        m.skip(20);
        let r = m.finish();
        assert_eq!((r.usage, r.unsupported, r.response_bytes), (None, true, 20));
    }

    /// Feeds `body` split at every byte boundary (and one byte at a time);
    /// every way gives the same result, which is returned.
    fn metered_every_way(endpoint: Endpoint, content_type: &str, body: &[u8]) -> Metered {
        let run = |chunks: Vec<&[u8]>| {
            let mut m = ResponseMeter::new(endpoint, content_type);
            for c in chunks {
                m.feed(c);
            }
            m.finish()
        };
        let whole = run(vec![body]);
        for cut in 0..=body.len() {
            assert_eq!(run(vec![&body[..cut], &body[cut..]]), whole, "cut at {cut}");
        }
        assert_eq!(run(body.chunks(1).collect()), whole);
        whole
    }

    fn usage(input: u64, output: u64, cache_read: u64) -> Option<Usage> {
        Some(Usage { input_tokens: input, output_tokens: output, cache_read_tokens: cache_read, ..Usage::default() })
    }

    const CHAT_STREAM: &str = concat!(
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello \\u00e9\"},\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-2024-08-06\",\"choices\":[],\"usage\":{\"prompt_tokens\":1500,\"completion_tokens\":42,\"total_tokens\":1542,\"prompt_tokens_details\":{\"cached_tokens\":1024}}}\n\n",
        "data: [DONE]\n\n",
    );

    #[test]
    fn openai_chat_json_and_stream() {
        let body = br#"{"id":"c1","object":"chat.completion","model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1500,"completion_tokens":42,"total_tokens":1542,"prompt_tokens_details":{"cached_tokens":1024,"audio_tokens":0}}}"#;
        let r = metered_every_way(Endpoint::OpenAiChat, "application/json", body);
        assert_eq!((r.usage, r.model.as_deref()), (usage(476, 42, 1024), Some("gpt-4o-2024-08-06")));
        let r = metered_every_way(Endpoint::OpenAiChat, "text/event-stream", CHAT_STREAM.as_bytes());
        assert_eq!((r.usage, r.model.as_deref()), (usage(476, 42, 1024), Some("gpt-4o-2024-08-06")));
        assert!(!r.incomplete && !r.output_estimated);
        assert_eq!(r.output_chars, Some(7), "\"Hello é\"");
        // Cut before the usage chunk: no usage, the output seen kept.
        let cut = CHAT_STREAM.find("\"choices\":[],").unwrap();
        let r = metered_every_way(Endpoint::OpenAiChat, "text/event-stream", &CHAT_STREAM.as_bytes()[..cut]);
        assert_eq!((r.usage, r.incomplete, r.output_chars), (None, true, Some(7)));
    }

    const RESPONSES_STREAM: &str = concat!(
        "event: response.created\n",
        "data: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"in_progress\",\"model\":\"gpt-5-codex\",\"output\":[],\"usage\":null}}\n\n",
        "event: response.output_text.delta\n",
        "data: {\"type\":\"response.output_text.delta\",\"sequence_number\":4,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"Done.\"}\n\n",
        "event: response.completed\n",
        "data: {\"type\":\"response.completed\",\"sequence_number\":9,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"completed\",\"model\":\"gpt-5-codex\",\"output\":[],\"usage\":{\"input_tokens\":3000,\"input_tokens_details\":{\"cached_tokens\":2048},\"output_tokens\":120,\"output_tokens_details\":{\"reasoning_tokens\":64},\"total_tokens\":3120}}}\n\n",
    );

    #[test]
    fn openai_responses_json_and_stream() {
        let body = br#"{"id":"resp_1","object":"response","status":"completed","model":"gpt-5-codex","output":[],"usage":{"input_tokens":3000,"input_tokens_details":{"cached_tokens":2048},"output_tokens":120,"output_tokens_details":{"reasoning_tokens":64},"total_tokens":3120}}"#;
        let r = metered_every_way(Endpoint::OpenAiResponses, "application/json", body);
        assert_eq!((r.usage, r.model.as_deref()), (usage(952, 120, 2048), Some("gpt-5-codex")));
        let r = metered_every_way(Endpoint::OpenAiResponses, "text/event-stream", RESPONSES_STREAM.as_bytes());
        assert_eq!((r.usage, r.model.as_deref(), r.incomplete), (usage(952, 120, 2048), Some("gpt-5-codex"), false));
        assert_eq!(r.output_chars, Some(5));
        let cut = RESPONSES_STREAM.find("event: response.completed").unwrap();
        let r = metered_every_way(Endpoint::OpenAiResponses, "text/event-stream", &RESPONSES_STREAM.as_bytes()[..cut]);
        assert_eq!((r.usage, r.incomplete, r.output_chars), (None, true, Some(5)));
    }

    const GEMINI_STREAM: &str = concat!(
        "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hel\"}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 900,\"candidatesTokenCount\": 1,\"totalTokenCount\": 901,\"cachedContentTokenCount\": 500},\"modelVersion\": \"gemini-2.5-pro\"}\r\n\r\n",
        "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"lo there\"}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 900,\"candidatesTokenCount\": 30,\"totalTokenCount\": 950,\"cachedContentTokenCount\": 500,\"thoughtsTokenCount\": 20},\"modelVersion\": \"gemini-2.5-pro\"}\r\n\r\n",
    );

    #[test]
    fn gemini_json_array_and_stream() {
        let body = br#"{"candidates":[{"content":{"parts":[{"text":"Hi"}],"role":"model"},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":900,"candidatesTokenCount":30,"cachedContentTokenCount":500,"thoughtsTokenCount":20,"totalTokenCount":950},"modelVersion":"gemini-2.5-pro"}"#;
        let gemini = Endpoint::Gemini { stream: false, conversation: true };
        let r = metered_every_way(gemini, "application/json", body);
        assert_eq!((r.usage, r.model.as_deref()), (usage(400, 50, 500), Some("gemini-2.5-pro")));
        let stream = Endpoint::Gemini { stream: true, conversation: true };
        let array = br#"[{"candidates":[{"content":{"parts":[{"text":"Hel"}]}}],"usageMetadata":{"promptTokenCount":900,"candidatesTokenCount":1}},
{"candidates":[{"content":{"parts":[{"text":"lo"}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":900,"candidatesTokenCount":30,"cachedContentTokenCount":500,"thoughtsTokenCount":20},"modelVersion":"gemini-2.5-pro"}]"#;
        let r = metered_every_way(stream, "application/json", array);
        assert_eq!(r.usage, usage(400, 50, 500));
        let r = metered_every_way(stream, "text/event-stream", GEMINI_STREAM.as_bytes());
        assert_eq!((r.usage, r.model.as_deref(), r.incomplete), (usage(400, 50, 500), Some("gemini-2.5-pro"), false));
        // Cut after the first event: its counts so far, output raised to the
        // text seen and flagged.
        let cut = GEMINI_STREAM.find("data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"lo").unwrap();
        let r = metered_every_way(stream, "text/event-stream", &GEMINI_STREAM.as_bytes()[..cut]);
        assert_eq!((r.usage, r.incomplete, r.output_estimated), (usage(400, 1, 500), true, true));
        // Gemini counts count_tokens apart: not a conversation, not read.
        assert!(!ResponseMeter::new(Endpoint::Gemini { stream: false, conversation: false }, "application/json").reads_body());
    }
}
