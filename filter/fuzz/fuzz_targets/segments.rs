//! Seen parts (`segments::read`): wherever it answers instead of leaving a
//! body to the full read, it agrees with the full read (`request::inspect`,
//! `body_text::user_texts`) and its uncovered ranges lie in order inside the
//! body. Each body is read with what the bodies before it left in the store
//! (as if every guard found their parts clean), so seen parts are compared
//! against mutated neighbours.
//!
//! Input: selector byte (endpoint, see `hubgate_fuzz::ENDPOINTS`), the first
//! body's length (u16, little-endian), the first body, the second body. The
//! first body is read again at the end.
#![no_main]

use hubgate_core::body_text::user_texts;
use hubgate_core::request::inspect;
use hubgate_core::segments::{read, SeenParts};
use hubgate_fuzz::{check, endpoint, lossy, Input};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let (ep, path) = endpoint(input.byte());
    let split = usize::from(input.u16());
    let rest = input.rest();
    let (first, second) = rest.split_at(split.min(rest.len()));
    let mut seen = SeenParts::default();
    for body in [first, second, first] {
        let Some(mut parts) = read(&mut seen, 1, ep, path, body) else { continue };
        let info = inspect(ep, path, body);
        check(info.as_ref().ok() == Some(&parts.info), "info differs from the full read", &(lossy(body), &parts.info));
        let texts: Vec<&str> = parts.texts.iter().map(|t| &*t.text).collect();
        let full = user_texts(ep, body);
        check(
            full.as_ref().is_ok_and(|f| f.iter().map(|t| &**t).eq(texts.iter().copied())),
            "texts differ from the full read",
            &(lossy(body), &texts),
        );
        let mut at = 0;
        for range in &parts.uncovered {
            check(range.start >= at && range.start <= range.end && range.end <= body.len(), "uncovered ranges out of order", &parts.uncovered);
            at = range.end;
        }
        parts.words_checked = true;
        parts.needle_free(body, |_| true);
        seen.remember(&parts, body);
    }
});
