//! OpenAI Chat streams report usage only when the request asks for it
//! (`stream_options.include_usage`). When a client streams without asking,
//! hubgate asks for it, so the stream is billed from the provider's own
//! count rather than estimated, and takes the usage chunk back out of the
//! answer (`usage::strip`): a client that did not ask does not expect a
//! chunk whose `choices` is empty. Runs last, after every body edit.

use serde_json::{json, Value};

use crate::api::Endpoint;
use crate::chain::{Cx, Guard, Step};

pub struct StreamUsage;

/// The body with `stream_options.include_usage` set; `has_options`: the
/// body already has a `stream_options` object.
fn with_include_usage(body: &[u8], has_options: bool) -> Result<Vec<u8>, String> {
    if has_options {
        let mut parsed: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        let options = parsed.get_mut("stream_options").and_then(Value::as_object_mut).ok_or("no stream_options object")?;
        options.insert("include_usage".to_string(), Value::Bool(true));
        return serde_json::to_vec(&parsed).map_err(|e| e.to_string());
    }
    // Without one, the field goes in first: the rest is not re-encoded.
    let open = body.iter().position(|&b| b == b'{').ok_or("not a JSON object")?;
    let (head, rest) = body.split_at(open + 1);
    let empty = rest.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'}');
    let field = json!({"include_usage": true}).to_string();
    let mut out = Vec::with_capacity(body.len() + 48);
    out.extend_from_slice(head);
    out.extend_from_slice(b"\"stream_options\":");
    out.extend_from_slice(field.as_bytes());
    if !empty {
        out.push(b',');
    }
    out.extend_from_slice(rest);
    Ok(out)
}

impl Guard for StreamUsage {
    fn name(&self) -> &'static str {
        "stream_usage"
    }

    /// Without it the stream is still answered, billed by estimate.
    fn fails_open(&self) -> bool {
        true
    }

    fn check(&self, cx: &mut Cx<'_>) -> Result<Step, String> {
        let ex = &mut *cx.ex;
        // With failover each attempt asks (after its provider's filters).
        if ex.failover.is_some() {
            return Ok(Step::Next);
        }
        if ex.endpoint != Endpoint::OpenAiChat || !ex.info.stream || ex.info.include_usage == Some(true) {
            return Ok(Step::Next);
        }
        let Some(body) = ex.body.as_deref() else { return Ok(Step::Next) };
        let edited = with_include_usage(body, ex.info.include_usage.is_some())?;
        ex.body = Some(edited);
        ex.body_changed = true;
        ex.filter_scan = None;
        ex.usage_added = true;
        Ok(Step::Next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(body: &[u8], has_options: bool) -> Value {
        serde_json::from_slice(&with_include_usage(body, has_options).unwrap()).unwrap()
    }

    #[test]
    fn asks_for_usage_keeping_everything_else() {
        let body = br#" {"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"{x}"}]}"#;
        let out = with_include_usage(body, false).unwrap();
        assert!(out.starts_with(br#" {"stream_options":{"include_usage":true},"model""#), "{}", String::from_utf8_lossy(&out));
        assert_eq!(parsed(body, false)["messages"][0]["content"], "{x}");
        assert_eq!(parsed(b"{ }", false), json!({"stream_options": {"include_usage": true}}));
        let with_options = br#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":false,"x":1}}"#;
        assert_eq!(parsed(with_options, true)["stream_options"], json!({"include_usage": true, "x": 1}));
        assert!(with_include_usage(b"[]", false).is_err());
    }
}
