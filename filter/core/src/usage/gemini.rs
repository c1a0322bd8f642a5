//! Usage in Gemini responses: `usageMetadata`, in a JSON body, in each event
//! of an SSE stream (`alt=sse`, the last one final), or in the last element
//! of a streamed JSON array. Cached prompt tokens are inside the prompt
//! count and billed as cache reads; thinking tokens are output.

use hubgate_wire::Usage;
use serde::Deserialize;

use super::{string_chars, StreamEnd};

const DELTA_FIELDS: [&[u8]; 1] = [b"\"text\":"];

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct UsageJson {
    prompt_token_count: Option<u64>,
    candidates_token_count: Option<u64>,
    cached_content_token_count: Option<u64>,
    thoughts_token_count: Option<u64>,
}

impl UsageJson {
    fn usage(&self) -> Usage {
        let prompt = self.prompt_token_count.unwrap_or(0);
        let cached = self.cached_content_token_count.unwrap_or(0).min(prompt);
        Usage {
            input_tokens: prompt - cached,
            output_tokens: self.candidates_token_count.unwrap_or(0).saturating_add(self.thoughts_token_count.unwrap_or(0)),
            cache_read_tokens: cached,
            ..Usage::default()
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct CandidateJson {
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ChunkJson {
    usage_metadata: Option<UsageJson>,
    model_version: Option<String>,
    #[serde(default)]
    candidates: Vec<CandidateJson>,
}

/// Usage and model from a complete body: one response object, or the array
/// of a stream sent without `alt=sse`.
pub fn from_json(body: &[u8]) -> (Option<Usage>, Option<String>) {
    let chunks = match serde_json::from_slice::<Vec<ChunkJson>>(body) {
        Ok(chunks) => chunks,
        Err(_) => match serde_json::from_slice::<ChunkJson>(body) {
            Ok(chunk) => vec![chunk],
            Err(_) => return (None, None),
        },
    };
    let mut stream = Stream::default();
    for chunk in chunks {
        stream.take(chunk);
    }
    (stream.usage, stream.model)
}

#[derive(Debug, Default, Clone)]
pub struct Stream {
    usage: Option<Usage>,
    model: Option<String>,
    finished: bool,
    output_chars: u64,
}

impl Stream {
    pub fn on_event(&mut self, _event: &str, data: &[u8]) {
        self.output_chars = self.output_chars.saturating_add(string_chars(data, &DELTA_FIELDS));
        if let Ok(chunk) = serde_json::from_slice::<ChunkJson>(data) {
            self.take(chunk);
        }
    }

    fn take(&mut self, chunk: ChunkJson) {
        self.model = chunk.model_version.or(self.model.take());
        if let Some(u) = chunk.usage_metadata {
            // Each event's counts are the totals so far.
            self.usage = Some(u.usage());
        }
        self.finished |= chunk.candidates.iter().any(|c| c.finish_reason.is_some());
    }

    pub fn finish(self) -> StreamEnd {
        StreamEnd::new(self.usage, self.model, !self.finished, self.output_chars)
    }
}
