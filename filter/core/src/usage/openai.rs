//! Usage in OpenAI responses. Chat Completions: the JSON `usage` object, or
//! in a stream the last chunk's (sent when `stream_options.include_usage`
//! is set), ended by `data: [DONE]`. Responses API (Codex CLI): `usage` of
//! the response, in a stream that of `response.completed` (or
//! `response.incomplete` / `response.failed`). Both count cached prompt
//! tokens inside the prompt total: they are billed as cache reads, the rest
//! as input.

use hubgate_wire::Usage;
use serde::Deserialize;

use super::{contains, string_chars, StreamEnd};

/// The Responses stream events read (the rest are skipped unparsed).
pub const RESPONSES_EVENTS: &[&str] = &["response.created", "response.completed", "response.incomplete", "response.failed"];
/// The Responses stream event carrying output text, measured in place.
pub const RESPONSES_DELTA_EVENT: &str = "response.output_text.delta";
const RESPONSES_DELTA_FIELDS: [&[u8]; 1] = [b"\"delta\":"];
/// Output in a chat chunk: text, a tool call's arguments, reasoning.
const CHAT_DELTA_FIELDS: [&[u8]; 3] = [b"\"content\":", b"\"arguments\":", b"\"reasoning_content\":"];

#[derive(Deserialize, Default)]
struct Details {
    cached_tokens: Option<u64>,
}

/// Chat Completions' and the Responses API's usage (their field names).
#[derive(Deserialize, Default)]
struct UsageJson {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    prompt_tokens_details: Option<Details>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    input_tokens_details: Option<Details>,
}

impl UsageJson {
    fn usage(&self) -> Usage {
        let prompt = self.prompt_tokens.or(self.input_tokens).unwrap_or(0);
        let details = self.prompt_tokens_details.as_ref().or(self.input_tokens_details.as_ref());
        let cached = details.and_then(|d| d.cached_tokens).unwrap_or(0).min(prompt);
        Usage {
            input_tokens: prompt - cached,
            output_tokens: self.completion_tokens.or(self.output_tokens).unwrap_or(0),
            cache_read_tokens: cached,
            ..Usage::default()
        }
    }
}

#[derive(Deserialize)]
struct BodyJson {
    model: Option<String>,
    usage: Option<UsageJson>,
}

/// Usage and model from a complete JSON body (either API).
pub fn from_json(body: &[u8]) -> (Option<Usage>, Option<String>) {
    match serde_json::from_slice::<BodyJson>(body) {
        Ok(b) => (b.usage.map(|u| u.usage()), b.model),
        Err(_) => (None, None),
    }
}

/// A Chat Completions stream.
#[derive(Debug, Default, Clone)]
pub struct ChatStream {
    usage: Option<Usage>,
    model: Option<String>,
    done: bool,
    output_chars: u64,
}

impl ChatStream {
    pub fn on_event(&mut self, _event: &str, data: &[u8]) {
        if data == b"[DONE]" {
            self.done = true;
            return;
        }
        self.output_chars = self.output_chars.saturating_add(string_chars(data, &CHAT_DELTA_FIELDS));
        let has_usage = contains(data, b"\"usage\"") && !contains(data, b"\"usage\":null");
        if self.model.is_some() && !has_usage {
            return;
        }
        if let Ok(chunk) = serde_json::from_slice::<BodyJson>(data) {
            self.model = self.model.take().or(chunk.model);
            if let Some(u) = chunk.usage {
                self.usage = Some(u.usage());
            }
        }
    }

    pub fn finish(self) -> StreamEnd {
        StreamEnd::new(self.usage, self.model, !self.done, self.output_chars)
    }
}

#[derive(Deserialize)]
struct ResponsesEventJson {
    response: Option<BodyJson>,
}

/// A Responses API stream.
#[derive(Debug, Default, Clone)]
pub struct ResponsesStream {
    usage: Option<Usage>,
    model: Option<String>,
    ended: bool,
}

impl ResponsesStream {
    pub fn on_event(&mut self, event: &str, data: &[u8]) {
        let Ok(parsed) = serde_json::from_slice::<ResponsesEventJson>(data) else { return };
        let Some(response) = parsed.response else { return };
        self.model = response.model.or(self.model.take());
        if let Some(u) = response.usage {
            self.usage = Some(u.usage());
        }
        self.ended |= event != "response.created";
    }

    pub fn finish(self, output_chars: u64) -> StreamEnd {
        StreamEnd::new(self.usage, self.model, !self.ended, output_chars)
    }
}

/// Characters of output text in one `response.output_text.delta` line.
pub fn responses_delta_chars(data: &[u8]) -> u64 {
    string_chars(data, &RESPONSES_DELTA_FIELDS)
}
