//! Response usage metering: `hubgate_core::usage::ResponseMeter` fed the
//! body in arbitrary chunks, then `finish()`. The result must not depend on
//! where the chunks were cut, and a JSON body must meter as its format's
//! `from_json` reads it whole.
//!
//! Input: selector byte (bits 0-1 content type, bits 2-4 endpoint: 0-3
//! Anthropic Messages, then count_tokens, Chat, Responses, Gemini), a cut-count byte (low 4
//! bits) and that many u16 LE cut points, then the response body.
#![no_main]

use hubgate_core::api::Endpoint;
use hubgate_core::usage::{anthropic, gemini, openai, ResponseMeter};
use hubgate_fuzz::{check, chunks, lossy, read_cuts, Input};
use libfuzzer_sys::fuzz_target;

const CONTENT_TYPES: [&str; 4] =
    ["text/event-stream", " Text/Event-Stream; charset=utf-8", "application/json", "application/json; charset=utf-8"];
const ENDPOINTS: [Endpoint; 8] = [
    Endpoint::AnthropicMessages,
    Endpoint::AnthropicMessages,
    Endpoint::AnthropicMessages,
    Endpoint::AnthropicMessages,
    Endpoint::AnthropicCountTokens,
    Endpoint::OpenAiChat,
    Endpoint::OpenAiResponses,
    Endpoint::Gemini { stream: true, conversation: true },
];

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let selector = input.byte();
    let content_type = CONTENT_TYPES.get(usize::from(selector & 3)).copied().unwrap_or_default();
    let endpoint = ENDPOINTS.get(usize::from((selector >> 2) & 7)).copied().unwrap_or_default();
    let cuts = read_cuts(&mut input);
    let body = input.rest();

    let mut whole = ResponseMeter::new(endpoint, content_type);
    whole.feed(body);
    let whole = whole.finish();

    let mut split = ResponseMeter::new(endpoint, content_type);
    let pieces = chunks(body, &cuts);
    for piece in &pieces {
        split.feed(piece);
    }
    let split = split.finish();

    check(whole == split, "metering depends on chunk boundaries", &(&pieces.iter().map(|p| lossy(p)).collect::<Vec<_>>(), &whole, &split));
    check(whole.response_bytes == body.len() as u64, "response_bytes is not the body length", &whole);
    let reads = endpoint.is_conversation();
    check(whole.unsupported != reads, "unsupported flag", &(endpoint, &whole));
    if !reads {
        check(whole.usage.is_none() && whole.model.is_none() && !whole.incomplete, "unsupported yet metered", &whole);
        return;
    }
    if !content_type.trim_start().to_ascii_lowercase().starts_with("text/event-stream") {
        let (usage, model) = match endpoint {
            Endpoint::AnthropicMessages => anthropic::from_json(body),
            Endpoint::Gemini { .. } => gemini::from_json(body),
            _ => openai::from_json(body),
        };
        check(whole.usage == usage && whole.model == model, "JSON metering differs from from_json", &(&whole, usage, model));
        check(!whole.incomplete, "a JSON body flagged incomplete", &whole);
    }
});
