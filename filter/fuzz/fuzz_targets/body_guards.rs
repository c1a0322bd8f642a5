//! The guards that read or edit the request body: request texts
//! (`body_text::user_texts`), sensitive words (`SensitiveWords::find`),
//! warmup detection and its synthetic reply, the fallback session id, and
//! request filters (`RequestFilters::apply`: header set/remove/replace, body
//! set/remove/text replace edited in place). Each body filter is also run
//! alone and its result compared with the same edit made on a parsed
//! `serde_json::Value`.
//!
//! Input: selector byte (endpoint, see `hubgate_fuzz::ENDPOINTS`; bit 3
//! zh-CN), header lines up to an empty line (`hubgate_fuzz::headers_from`),
//! then the body.
#![no_main]

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::OnceLock;

use hubgate_core::body_text::user_texts;
use hubgate_core::guards::request_filters::{Binding, RequestFilters};
use hubgate_core::guards::sensitive_words::SensitiveWords;
use hubgate_core::guards::{session, warmup};
use hubgate_core::locale::Locale;
use hubgate_core::usage::sse::SseScanner;
use hubgate_fuzz::{check, check_json, check_reply, endpoint, headers_from, is_clean_id, lossy, Input};
use hubgate_wire::{FilterAction, FilterBinding, FilterScope, RequestFilter, SensitiveWord, TextMatch, WordMatch};
use libfuzzer_sys::fuzz_target;
use serde::de::IgnoredAny;
use serde_json::{json, Value};

fn word(id: i64, word: &str, match_type: WordMatch) -> SensitiveWord {
    SensitiveWord { id, word: word.to_string(), match_type }
}

fn filter(id: i64, scope: FilterScope, action: FilterAction, match_type: Option<TextMatch>, target: &str, replacement: Option<Value>) -> RequestFilter {
    RequestFilter {
        id,
        name: format!("f{id}"),
        scope,
        action,
        match_type,
        target: target.to_string(),
        replacement,
        priority: 0,
        binding: FilterBinding::Global,
        provider_ids: vec![],
        group_tags: vec![],
    }
}

fn compiled(filters: &[RequestFilter]) -> RequestFilters {
    let (compiled, warnings) = RequestFilters::compile(filters);
    check(warnings.is_empty(), "a fixed filter does not compile", &warnings);
    compiled
}

/// Every string value (not key) of `v` through `f`.
fn map_strings(v: &mut Value, f: &dyn Fn(&str) -> String) {
    match v {
        Value::String(s) => *s = f(s),
        Value::Array(items) => items.iter_mut().for_each(|i| map_strings(i, f)),
        Value::Object(map) => map.values_mut().for_each(|i| map_strings(i, f)),
        _ => {}
    }
}

/// Every string of a JSON text (duplicate keys' values included, which a
/// `Value` would drop), keys too.
struct AllStrings<'s>(&'s mut HashSet<String>);

impl<'de> serde::de::DeserializeSeed<'de> for AllStrings<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for AllStrings<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.0.insert(v.to_string());
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(AllStrings(&mut *self.0))?.is_some() {}
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(k) = map.next_key::<String>()? {
            self.0.insert(k);
            map.next_value_seed(AllStrings(&mut *self.0))?;
        }
        Ok(())
    }
}

struct Fixed {
    words: SensitiveWords,
    all: RequestFilters,
    contains: RequestFilters,
    regex: RequestFilters,
    exact: RequestFilters,
    set: RequestFilters,
    remove: RequestFilters,
    re: regex::Regex,
}

static FIXED: OnceLock<Fixed> = OnceLock::new();

/// Compiled once: compiling regexes per input would dominate the run.
fn fixed() -> Fixed {
    use FilterAction::*;
    use FilterScope::*;
    let (words, _) = SensitiveWords::compile(&[
        word(1, "secret", WordMatch::Contains),
        word(2, "Warmup please", WordMatch::Exact),
        word(3, r"pass(word)?\s*[:=]\s*\S+", WordMatch::Regex),
        word(4, "ключ", WordMatch::Contains),
        word(5, "(?i)пароль\\d", WordMatch::Regex),
    ]);
    let contains = filter(1, Body, TextReplace, Some(TextMatch::Contains), "secret", Some(json!("[redacted]")));
    let regex = filter(2, Body, TextReplace, Some(TextMatch::Regex), "s.cr(e)t", Some(json!("<$&|$1|$$>")));
    let exact = filter(3, Body, TextReplace, Some(TextMatch::Exact), "warmup", Some(json!({"w": 1})));
    let set = filter(4, Body, JsonPath, None, "$.metadata.user_id", Some(json!("anon")));
    let remove = filter(5, Body, Remove, None, "tools", None);
    let set_index = filter(6, Body, Set, None, "messages[0].content", Some(json!([{"type": "text", "text": "x"}])));
    let headers_set = filter(7, Header, Set, None, "X-Team", Some(json!("a")));
    let headers_remove = filter(8, Header, Remove, None, "x-api-key", None);
    let headers_replace = filter(9, Header, TextReplace, Some(TextMatch::Contains), "bearer", Some(json!("Bearer")));
    let all = compiled(&[
        contains.clone(), regex.clone(), exact.clone(), set.clone(), remove.clone(), set_index,
        headers_set, headers_remove, headers_replace,
    ]);
    let re = match regex::Regex::new("s.cr(e)t") {
        Ok(re) => re,
        Err(e) => hubgate_fuzz::fail("fixed regex", &e.to_string()),
    };
    Fixed {
        words,
        all,
        contains: compiled(&[contains]),
        regex: compiled(&[regex]),
        exact: compiled(&[exact]),
        set: compiled(&[set]),
        remove: compiled(&[remove]),
        re,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let selector = input.byte();
    let (ep, path) = endpoint(selector);
    let locale = if selector & 8 != 0 { Locale::ZhCn } else { Locale::En };
    let headers = headers_from(&input.block());
    let body = input.rest();
    // serde_json skips the strings it does not decode without checking
    // their UTF-8 or escapes, so "JSON" for the filters (which check that
    // way) is laxer than a body that parses as a `Value`.
    let is_json = serde_json::from_slice::<IgnoredAny>(body).is_ok();
    let value = serde_json::from_slice::<Value>(body).ok();

    // Request texts: every text is one of the body's strings.
    let texts = match user_texts(ep, body) {
        Ok(texts) => texts,
        Err(_) => {
            check(value.is_none() || ep == hubgate_core::api::Endpoint::Other, "user_texts refused valid JSON", &lossy(body));
            Vec::new()
        }
    };
    let mut all = HashSet::new();
    let mut de = serde_json::Deserializer::from_slice(body);
    if serde::de::DeserializeSeed::deserialize(AllStrings(&mut all), &mut de).is_ok() {
        for t in &texts {
            check(all.contains(t.as_ref()), "a request text that is not a string of the body", &(t, lossy(body)));
        }
    }

    // Sensitive words: a text holding a contains word is always caught.
    let fixed = FIXED.get_or_init(fixed);
    let hit = fixed.words.find(&texts);
    if texts.iter().any(|t| t.to_ascii_lowercase().contains("secret")) {
        check(hit.is_some(), "a contains word was missed", &texts);
    }
    if let Some(hit) = &hit {
        check_reply(&hit.reply(locale), "r");
        let _ = hit.blocked_reason();
    }

    // Warmup and its reply.
    if warmup::is_warmup(ep, path, body) {
        check(is_json, "a warmup that is not JSON", &lossy(body));
    }
    let model = value.as_ref().and_then(|v| v.get("model")).and_then(Value::as_str);
    for stream in [false, true] {
        let reply = warmup::reply(model, stream, &lossy(headers.get("x-request-id").unwrap_or("").as_bytes()));
        if stream {
            let mut ok = true;
            let mut scanner = SseScanner::default();
            let mut each = |_: &str, d: &[u8]| ok &= serde_json::from_slice::<Value>(d).is_ok();
            scanner.feed(&reply.body, &mut each);
            scanner.finish(&mut each);
            check(ok, "warmup SSE event data is not JSON", &lossy(&reply.body));
        } else {
            check_json(&reply.body, "warmup reply is not JSON");
        }
    }

    // Fallback session id.
    if let Some(id) = session::fallback_session_id(ep, 42, body) {
        check(is_clean_id(&id), "fallback session id", &id);
        check(value.as_ref().is_none_or(Value::is_object), "a fallback session id for a body that is no object", &lossy(body));
    }

    // Request filters, all together (crashes only, output must stay JSON).
    let edits = fixed.all.apply(Binding::Global, &headers, Some(body));
    if let Some(new) = &edits.body {
        check(serde_json::from_slice::<IgnoredAny>(new).is_ok(), "filters made the body invalid JSON", &(lossy(body), lossy(new)));
    }
    if !is_json {
        check(edits.body.is_none(), "filters edited a body that is not JSON", &(lossy(body), &edits));
    }
    check(edits.set_headers.iter().any(|(k, v)| k == "x-team" && v == "a"), "header set missing", &edits);
    // (Envoy never hands over a value with control bytes; one the fuzzer
    // made may stay as it was, but no filter may introduce one.)
    let bad_value = |v: &str| v.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f);
    for (name, value) in &edits.set_headers {
        let was_bad = headers.all(name).any(bad_value);
        check(was_bad || !bad_value(value), "invalid header value set", &(name, value));
    }

    // Each body filter alone, against the same edit on a parsed value.
    let Some(original) = value else { return };
    let run = |f: &RequestFilters| -> (Value, bool) {
        let edits = f.apply(Binding::Global, &headers, Some(body));
        let failed = !edits.failures.is_empty();
        let out = match &edits.body {
            Some(new) => match serde_json::from_slice::<Value>(new) {
                Ok(v) => v,
                Err(e) => hubgate_fuzz::fail("edited body is not JSON", &(e.to_string(), lossy(body), lossy(new))),
            },
            None => original.clone(),
        };
        (out, failed)
    };
    let expect_strings = |f: &dyn Fn(&str) -> String| {
        let mut v = original.clone();
        map_strings(&mut v, f);
        v
    };
    if body.is_empty() {
        return;
    }
    let (got, failed) = run(&fixed.contains);
    check(!failed, "text replace failed on JSON", &lossy(body));
    check(got == expect_strings(&|s| s.replace("secret", "[redacted]")), "contains replace differs from the parsed edit", &(lossy(body), &got));

    let (got, failed) = run(&fixed.regex);
    check(!failed, "regex replace failed on JSON", &lossy(body));
    {
        let re = &fixed.re;
        let expected = expect_strings(&|s| {
            re.replace_all(s, |c: &regex::Captures<'_>| {
                format!("<{}|{}|$>", c.get(0).map_or("", |m| m.as_str()), c.get(1).map_or("", |m| m.as_str()))
            })
            .into_owned()
        });
        check(got == expected, "regex replace differs from the parsed edit", &(lossy(body), &got, &expected));
    }

    let (got, failed) = run(&fixed.exact);
    check(!failed, "exact replace failed on JSON", &lossy(body));
    check(got == expect_strings(&|s| if s == "warmup" { r#"{"w":1}"#.to_string() } else { s.to_string() }), "exact replace differs from the parsed edit", &(lossy(body), &got));

    let (got, failed) = run(&fixed.set);
    if !failed {
        check(got.pointer("/metadata/user_id") == Some(&json!("anon")), "json_path set did not set", &(lossy(body), &got));
        if let (Value::Object(mut a), Value::Object(mut b)) = (got.clone(), original.clone()) {
            a.remove("metadata");
            b.remove("metadata");
            check(a == b, "json_path set changed other fields", &(lossy(body), &got));
        }
    }

    let (got, failed) = run(&fixed.remove);
    if !failed {
        check(got.get("tools").is_none(), "remove left the field", &(lossy(body), &got));
        if let (Value::Object(mut a), Value::Object(mut b)) = (got.clone(), original.clone()) {
            a.remove("tools");
            b.remove("tools");
            check(a == b, "remove changed other fields", &(lossy(body), &got));
        }
    }
    let _: Vec<Cow<'_, str>> = texts;
});
