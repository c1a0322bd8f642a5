//! Guard 2: sensitive words (SPEC §2.2). The word list is compiled once per
//! snapshot; a request only scans the texts of `body_text::user_texts`, the
//! cheapest matchers first: contains, then exact, then regex.
//!
//! Matching ignores case, non-ASCII included. The automata fold ASCII case
//! only, so a text with other cased characters is searched in a lowercased
//! copy; other texts (ASCII, Chinese…) are searched in place. Regexes fold
//! case themselves and run on the texts as they are, each only on a text
//! that holds one of its required literals (`regex_literals`); those
//! without one run together as one `RegexSet` first.

use std::borrow::Cow;
use std::collections::HashMap;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use hubgate_wire::pattern::{self, PatternUse};
use hubgate_wire::{SensitiveWord, WordMatch};
use regex::{Regex, RegexSet};
use serde_json::{json, Value};

use crate::body_text::user_texts;
use crate::chain::{Cx, Guard, Step};
use crate::locale::Locale;
use crate::regex_literals::{self, Fold};
use crate::reply::LocalReply;

/// Above this the automaton is an NFA: half the speed, a tenth the memory.
/// A DFA of 1,000 words takes about 2 MiB.
const DFA_MEMORY_LIMIT: usize = 4 * 1024 * 1024;
/// Characters of context either side of the match in `Hit::matched_text`.
const CONTEXT: usize = 20;
/// Characters of `Hit::matched_text`, "…" marks aside.
const MAX_MATCHED: usize = 60;

#[derive(Debug, Clone, Default)]
pub struct SensitiveWords {
    /// The `contains` words and then every regex literal, lowercased, so
    /// that one pass over a text finds both: pattern `i` is
    /// `contains_words[i]`, and past those, literal `i - contains_words.len()`.
    automaton: Option<AhoCorasick>,
    contains_words: Vec<String>,
    /// Byte length of the longest lowercased contains word.
    longest_contains: usize,
    literal_count: usize,
    /// A text with one of these characters skips the literal prefilter.
    unseen: Vec<char>,
    /// Trimmed, lowercased `exact` word → the word as configured.
    exact: HashMap<String, String>,
    /// Byte length of the longest key of `exact`.
    longest_exact: usize,
    regexes: Vec<RegexWord>,
    /// The regexes without a literal: member `i` is the one whose
    /// `Prefilter::Set` is `i`.
    set: Option<RegexSet>,
}

#[derive(Debug, Clone)]
struct RegexWord {
    word: String,
    regex: Regex,
    prefilter: Prefilter,
}

/// When a regex runs on a text.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Prefilter {
    /// The text holds one of these literals (ids).
    Literals(Vec<usize>),
    /// The set says this member matches.
    Set(usize),
    Always,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The word as configured.
    pub word: String,
    pub match_type: WordMatch,
    /// The matched span with some context, at most ~60 characters.
    pub matched_text: String,
}

impl SensitiveWords {
    /// Compiles a snapshot's word list. Words that cannot be used are left
    /// out, each with a warning naming its id.
    pub fn compile(words: &[SensitiveWord]) -> (SensitiveWords, Vec<String>) {
        let mut compiled = SensitiveWords::default();
        let mut warnings = Vec::new();
        let mut contains = Vec::new();
        let mut contains_ids = Vec::new();
        let mut literals = Vec::new();
        let mut without_literal = Vec::new();
        for w in words {
            if w.word.trim().is_empty() {
                warnings.push(format!("sensitive word {} skipped: the word is blank", w.id));
                continue;
            }
            match w.match_type {
                WordMatch::Contains => {
                    let pattern = lowercase(&w.word);
                    compiled.longest_contains = compiled.longest_contains.max(pattern.len());
                    contains.push(pattern);
                    contains_ids.push(w.id);
                    compiled.contains_words.push(w.word.clone());
                }
                WordMatch::Exact => {
                    let key = lowercase(w.word.trim());
                    compiled.longest_exact = compiled.longest_exact.max(key.len());
                    compiled.exact.entry(key).or_insert_with(|| w.word.clone());
                }
                WordMatch::Regex => match pattern::compile(&w.word, PatternUse::SensitiveWord) {
                    Ok(regex) => {
                        let required = pattern::parse(&w.word, PatternUse::SensitiveWord)
                            .ok()
                            .and_then(|hir| regex_literals::required(&hir, Fold::Lower));
                        let prefilter = match required {
                            Some(required) => {
                                compiled.unseen.extend(required.unseen);
                                let first = literals.len();
                                literals.extend(required.literals);
                                Prefilter::Literals((first..literals.len()).collect())
                            }
                            None => {
                                without_literal.push(w.word.as_str());
                                Prefilter::Set(without_literal.len() - 1)
                            }
                        };
                        compiled.regexes.push(RegexWord { word: w.word.clone(), regex, prefilter });
                    }
                    Err(reason) => warnings.push(format!("sensitive word {} skipped: {reason}", w.id)),
                },
            }
        }
        compiled.unseen.sort_unstable();
        compiled.unseen.dedup();
        compiled.literal_count = literals.len();
        let mut patterns = contains;
        patterns.extend(literals);
        if !patterns.is_empty() {
            match automaton(&patterns, MatchKind::Standard) {
                Ok(automaton) => compiled.automaton = Some(automaton),
                Err(err) => {
                    if !contains_ids.is_empty() {
                        warnings.push(format!("sensitive words {contains_ids:?} skipped: {err}"));
                    }
                    compiled.contains_words.clear();
                    compiled.literal_count = 0;
                }
            }
        }
        if !without_literal.is_empty() {
            compiled.set = pattern::compile_set(&without_literal, PatternUse::SensitiveWord).ok();
        }
        // What cannot be prefiltered runs on every text.
        for r in &mut compiled.regexes {
            let usable = match r.prefilter {
                Prefilter::Literals(_) => compiled.automaton.is_some(),
                Prefilter::Set(_) => compiled.set.is_some(),
                Prefilter::Always => true,
            };
            if !usable {
                r.prefilter = Prefilter::Always;
            }
        }
        (compiled, warnings)
    }

    pub fn is_empty(&self) -> bool {
        self.contains_words.is_empty() && self.exact.is_empty() && self.regexes.is_empty()
    }

    /// The first hit: contains words over all texts, then exact words, then
    /// regexes; within one kind, the first text with a hit.
    pub fn find(&self, texts: &[Cow<str>]) -> Option<Hit> {
        if self.is_empty() {
            return None;
        }
        let lowered: Vec<Option<String>> =
            texts.iter().map(|text| if self.automaton.is_some() { lowered_copy(text) } else { None }).collect();
        // Which regex literals each text holds, found in the contains pass.
        let count = self.literal_count;
        let mut seen = vec![false; texts.len() * count];
        if let Some(automaton) = &self.automaton {
            for (i, (text, low)) in texts.iter().zip(&lowered).enumerate() {
                let seen = seen.get_mut(i * count..(i + 1) * count).unwrap_or_default();
                if let Some(hit) = self.scan(automaton, text, low.as_deref(), seen) {
                    return Some(hit);
                }
            }
        }
        self.find_exact(texts).or_else(|| {
            texts.iter().enumerate().find_map(|(i, text)| {
                let seen = seen.get(i * count..(i + 1) * count).unwrap_or_default();
                self.find_regex(text, seen)
            })
        })
    }

    /// One pass over a text: its leftmost contains word (the one listed
    /// first, among those starting there); and the literals it holds.
    fn scan(&self, automaton: &AhoCorasick, text: &str, low: Option<&str>, seen: &mut [bool]) -> Option<Hit> {
        let words = self.contains_words.len();
        let mut first: Option<(usize, usize, usize)> = None;
        for m in automaton.find_overlapping_iter(low.unwrap_or(text)) {
            if let Some((start, ..)) = first {
                // Matches come by end, so later ones cannot start before `start`.
                if m.end().saturating_sub(self.longest_contains) > start {
                    break;
                }
            }
            let id = m.pattern().as_usize();
            match id.checked_sub(words) {
                Some(literal) => {
                    if let Some(seen) = seen.get_mut(literal) {
                        *seen = true;
                    }
                }
                None => {
                    if first.is_none_or(|(start, best, _)| (m.start(), id) < (start, best)) {
                        first = Some((m.start(), id, m.end()));
                    }
                }
            }
        }
        let (start, id, end) = first?;
        let (start, end) = if low.is_some() { original_span(text, start, end) } else { (start, end) };
        Some(Hit {
            word: self.contains_words.get(id)?.clone(),
            match_type: WordMatch::Contains,
            matched_text: snippet(text, start, end),
        })
    }

    fn find_exact(&self, texts: &[Cow<str>]) -> Option<Hit> {
        if self.exact.is_empty() {
            return None;
        }
        texts.iter().find_map(|text| {
            let trimmed = text.trim();
            // Lowercasing shrinks text at most threefold (U+212A KELVIN SIGN
            // → k), so a longer text cannot equal any word: skip the copy.
            if trimmed.len() > self.longest_exact.saturating_mul(3) {
                return None;
            }
            let word = self.exact.get(&lowercase(trimmed))?;
            Some(Hit {
                word: word.clone(),
                match_type: WordMatch::Exact,
                matched_text: snippet(trimmed, 0, trimmed.len()),
            })
        })
    }

    /// The first regex (in list order) that matches `text`, which holds
    /// the literals flagged in `seen`.
    fn find_regex(&self, text: &str, seen: &[bool]) -> Option<Hit> {
        let unfiltered = !text.is_ascii() && text.contains(self.unseen.as_slice());
        // Which of the regexes without a literal match: almost always none,
        // and `is_match` finds that out in a fraction of what `matches`
        // spends tracking every pattern.
        let set = self.set.as_ref().map(|set| set.is_match(text).then(|| set.matches(text)));
        self.regexes.iter().find_map(|r| {
            let run = match &r.prefilter {
                Prefilter::Literals(ids) => unfiltered || ids.iter().any(|&id| seen.get(id) == Some(&true)),
                Prefilter::Set(i) => match &set {
                    None => true,
                    Some(matched) => matched.as_ref().is_some_and(|m| m.matched(*i)),
                },
                Prefilter::Always => true,
            };
            let m = if run { r.regex.find(text)? } else { return None };
            Some(Hit { word: r.word.clone(), match_type: WordMatch::Regex, matched_text: snippet(text, m.start(), m.end()) })
        })
    }
}

impl Hit {
    /// The 400 answer. Like *CCH*'s, it names the word, the matched text and
    /// the match type and asks the user to edit the request and retry.
    pub fn reply(&self, locale: Locale) -> LocalReply {
        let kind = match_type_name(self.match_type);
        let message = match locale {
            Locale::En => format!(
                "Request contains the sensitive word \"{}\" (match type: {kind}, matched text: \"{}\"). \
                 Please edit the request and retry.",
                self.word, self.matched_text
            ),
            Locale::ZhCn => {
                let label = match self.match_type {
                    WordMatch::Contains => "包含匹配",
                    WordMatch::Exact => "精确匹配",
                    WordMatch::Regex => "正则匹配",
                };
                format!(
                    "请求包含敏感词：\"{}\"，匹配内容：\"{}\"，匹配类型：{label}，请修改后重试。",
                    self.word, self.matched_text
                )
            }
        };
        LocalReply::new(400, "sensitive_word", message)
            .with_detail("word", json!(self.word))
            .with_detail("match_type", json!(kind))
            .with_detail("matched_text", json!(self.matched_text))
    }

    /// The audit row's `blocked_reason`.
    pub fn blocked_reason(&self) -> Value {
        json!({
            "word": self.word,
            "match_type": match_type_name(self.match_type),
            "matched_text": self.matched_text,
        })
    }
}

fn match_type_name(match_type: WordMatch) -> &'static str {
    match match_type {
        WordMatch::Contains => "contains",
        WordMatch::Exact => "exact",
        WordMatch::Regex => "regex",
    }
}

/// A DFA where it is small enough: the crate would pick an NFA beyond 100
/// patterns, which scans about half as fast.
fn automaton(patterns: &[String], kind: MatchKind) -> Result<AhoCorasick, aho_corasick::BuildError> {
    let mut builder = AhoCorasick::builder();
    builder.match_kind(kind).ascii_case_insensitive(true);
    match builder.kind(Some(AhoCorasickKind::DFA)).build(patterns) {
        Ok(dfa) if dfa.memory_usage() <= DFA_MEMORY_LIMIT => Ok(dfa),
        _ => builder.kind(None).build(patterns),
    }
}

/// Per-character lowercase: both sides of every comparison go through it.
fn lowercase(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        push_lower(&mut out, c);
    }
    out
}

fn push_lower(out: &mut String, c: char) {
    if c.is_ascii() || is_caseless(c) {
        out.push(c.to_ascii_lowercase());
    } else {
        out.extend(c.to_lowercase());
    }
}

/// A copy of `text` to match in, when it has non-ASCII characters with a
/// lowercase form. ASCII letters may stay as they are: matchers fold them.
fn lowered_copy(text: &str) -> Option<String> {
    if text.is_ascii() {
        return None;
    }
    let (first, _) = text.char_indices().find(|&(_, c)| {
        !c.is_ascii() && !is_caseless(c) && !c.to_lowercase().eq(std::iter::once(c))
    })?;
    let (head, rest) = text.split_at_checked(first)?;
    let mut out = String::with_capacity(text.len() + 16);
    out.push_str(head);
    for c in rest.chars() {
        push_lower(&mut out, c);
    }
    Some(out)
}

/// Blocks without letter case, checked without the case tables because
/// Chinese, Japanese and Korean text is made of them.
fn is_caseless(c: char) -> bool {
    matches!(c, '\u{2000}'..='\u{206F}' | '\u{3000}'..='\u{A63F}' | '\u{AC00}'..='\u{D7A3}' | '\u{F900}'..='\u{FAFF}' | '\u{FF00}'..='\u{FF20}')
}

/// The span of `text` whose lowercase is `start..end` of `lowercase(text)`,
/// widened to whole characters.
fn original_span(text: &str, start: usize, end: usize) -> (usize, usize) {
    let mut lowered = 0;
    let mut from = None;
    for (i, c) in text.char_indices() {
        let next = lowered + c.to_lowercase().map(char::len_utf8).sum::<usize>();
        if from.is_none() && next > start {
            from = Some(i);
        }
        if next >= end && from.is_some() {
            return (from.unwrap_or(i), i + c.len_utf8());
        }
        lowered = next;
    }
    (from.unwrap_or(text.len()), text.len())
}

/// `text[start..end]` with up to `CONTEXT` characters either side, at most
/// `MAX_MATCHED` characters, and "…" where the text goes on.
fn snippet(text: &str, start: usize, end: usize) -> String {
    let before = text.get(..start).unwrap_or_default();
    let whole = text.get(start..end).unwrap_or_default();
    let after = text.get(end..).unwrap_or_default();
    let matched = first_chars(whole, MAX_MATCHED);
    let context = CONTEXT.min(MAX_MATCHED.saturating_sub(matched.chars().count()) / 2);
    let head = last_chars(before, context);
    let tail = if matched.len() < whole.len() { "" } else { first_chars(after, context) };
    let mut out = String::with_capacity(head.len() + matched.len() + tail.len() + 6);
    if head.len() < before.len() {
        out.push('…');
    }
    out.push_str(head);
    out.push_str(matched);
    out.push_str(tail);
    if start + matched.len() + tail.len() < text.len() {
        out.push('…');
    }
    out
}

fn first_chars(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => s.get(..i).unwrap_or(s),
        None => s,
    }
}

fn last_chars(s: &str, n: usize) -> &str {
    if n == 0 {
        return "";
    }
    match s.char_indices().rev().nth(n - 1) {
        Some((i, _)) => s.get(i..).unwrap_or(s),
        None => s,
    }
}

/// Guard 2: the policy's words against the request's system and user
/// texts. Fails open: a body it cannot read passes (and is counted).
pub struct SensitiveWordsGuard;

impl Guard for SensitiveWordsGuard {
    fn name(&self) -> &'static str {
        "sensitive_words"
    }

    fn fails_open(&self) -> bool {
        true
    }

    fn check(&self, cx: &mut Cx<'_>) -> Result<Step, String> {
        let ex = &mut *cx.ex;
        let (Some(snapshot), Some(body)) = (ex.snapshot.as_ref(), ex.body.as_deref()) else {
            return Err("no policy or body".to_string());
        };
        if snapshot.sensitive_words.is_empty() {
            return Ok(Step::Next);
        }
        // Texts of seen parts already found clean under this policy are
        // not scanned again (segments.rs).
        let parts = ex.parts.as_mut().filter(|p| p.version == snapshot.version);
        let texts = match &parts {
            Some(parts) => parts.new_texts().map(Cow::Borrowed).collect(),
            None => user_texts(ex.endpoint, body).map_err(|e| e.to_string())?,
        };
        match snapshot.sensitive_words.find(&texts) {
            Some(hit) => Ok(Step::Answer(hit.reply(snapshot.locale))),
            None => {
                if let Some(parts) = parts {
                    parts.words_checked = true;
                }
                Ok(Step::Next)
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::api::Endpoint;
    use crate::body_text::{samples, user_texts};
    use WordMatch::{Contains, Exact, Regex as Re};

    fn compile(words: &[(&str, WordMatch)]) -> SensitiveWords {
        let list: Vec<SensitiveWord> = words
            .iter()
            .zip(1..)
            .map(|((word, match_type), id)| SensitiveWord { id, word: word.to_string(), match_type: *match_type })
            .collect();
        let (compiled, warnings) = SensitiveWords::compile(&list);
        assert!(warnings.is_empty(), "{warnings:?}");
        compiled
    }

    fn find(words: &SensitiveWords, texts: &[&str]) -> Option<(String, WordMatch, String)> {
        let texts: Vec<Cow<str>> = texts.iter().map(|t| Cow::Borrowed(*t)).collect();
        words.find(&texts).map(|hit| (hit.word, hit.match_type, hit.matched_text))
    }

    #[test]
    fn finds_words_case_insensitively() {
        type Case<'a> = (&'a [(&'a str, WordMatch)], &'a [&'a str], Option<(&'a str, WordMatch, &'a str)>);
        let cases: &[Case] = &[
            (&[("secret", Contains)], &["my SECRET plan"], Some(("secret", Contains, "my SECRET plan"))),
            (&[("Secret", Contains)], &["a secret"], Some(("Secret", Contains, "a secret"))),
            (&[("ÄBC", Contains)], &["x äbc y"], Some(("ÄBC", Contains, "x äbc y"))),
            (&[("äbc", Contains)], &["Straße ÄBC"], Some(("äbc", Contains, "Straße ÄBC"))),
            (&[("пароль", Contains)], &["мой ПАРОЛЬ тут"], Some(("пароль", Contains, "мой ПАРОЛЬ тут"))),
            (&[("σοφία", Contains)], &["Η ΣΟΦΊΑ"], Some(("σοφία", Contains, "Η ΣΟΦΊΑ"))),
            (&[("机密", Contains)], &["这是机密文件"], Some(("机密", Contains, "这是机密文件"))),
            // Full case folding (ß = ss) is not done.
            (&[("straße", Contains)], &["STRASSE"], None),
            (&[("secret", Contains)], &["secre t", "s3cret"], None),
            // Leftmost match first; at one position, the word listed first.
            (&[("beta", Contains), ("alpha", Contains)], &["alpha beta"], Some(("alpha", Contains, "alpha beta"))),
            (&[("abc", Contains), ("abcdef", Contains)], &["abcdef"], Some(("abc", Contains, "abcdef"))),
            (&[("bcd", Contains), ("abcdef", Contains)], &["abcdefg"], Some(("abcdef", Contains, "abcdefg"))),
            (&[("beta", Contains)], &["clean", "has beta"], Some(("beta", Contains, "has beta"))),
            // Exact: the whole trimmed text, any case, never a substring.
            (&[("Hello World", Exact)], &["  hello WORLD\n"], Some(("Hello World", Exact, "hello WORLD"))),
            (&[("  hi  ", Exact)], &["HI"], Some(("  hi  ", Exact, "HI"))),
            (&[("ÜBER", Exact)], &["über"], Some(("ÜBER", Exact, "über"))),
            (&[("hello world", Exact)], &["hello world!", "say hello world"], None),
            // Regex: case-insensitive, non-ASCII letters too.
            (&[(r"pass(word)?\s*[:=]", Re)], &["my PASSWORD = x"], Some((r"pass(word)?\s*[:=]", Re, "my PASSWORD = x"))),
            (&[(r"ärger\d+", Re)], &["kein ÄRGER42!"], Some((r"ärger\d+", Re, "kein ÄRGER42!"))),
            (&[(r"ÄRGER\d+", Re)], &["kein ärger7"], Some((r"ÄRGER\d+", Re, "kein ärger7"))),
            (&[(r"^\d{3}-\d{4}$", Re)], &["555-1234 ok"], None),
            // Cost order, whatever the text order: contains, exact, regex.
            (&[(r"sec.et", Re), ("secret", Contains)], &["secret"], Some(("secret", Contains, "secret"))),
            (&[(r"h.llo", Re), ("hello", Exact)], &["hello"], Some(("hello", Exact, "hello"))),
            (&[("hello", Exact), ("secret", Contains)], &["hello", "the secret"], Some(("secret", Contains, "the secret"))),
            (&[("zzz", Contains), (r"secret_key\s*=", Re)], &["my SECRET_KEY = 1"], Some((r"secret_key\s*=", Re, "my SECRET_KEY = 1"))),
            (&[(r"secret_key\s*=", Re), ("zzz", Contains)], &["secret_key=", "zzz"], Some(("zzz", Contains, "zzz"))),
            (&[], &["anything"], None),
            (&[("word", Contains), ("word", Exact), ("word", Re)], &[], None),
        ];
        for (words, texts, want) in cases {
            let got = find(&compile(words), texts);
            let want = want.map(|(w, m, t)| (w.to_string(), m, t.to_string()));
            assert_eq!(got, want, "{words:?} in {texts:?}");
        }
    }

    #[test]
    fn empty_list() {
        let (words, warnings) = SensitiveWords::compile(&[]);
        assert!(words.is_empty() && warnings.is_empty());
        assert_eq!(find(&words, &["anything"]), None);
        assert!(!compile(&[("x", Exact)]).is_empty());
    }

    #[test]
    fn unusable_words_are_skipped_with_a_warning() {
        let list = [
            (1, "(unclosed", Re),
            (2, "ok", Contains),
            (3, "  ", Exact),
            (4, "a*|b", Re),
            (5, r"\w{1000}{1000}", Re),
            (6, "fine\\d", Re),
            (7, "", Contains),
        ];
        let list: Vec<SensitiveWord> = list
            .iter()
            .map(|(id, word, match_type)| SensitiveWord { id: *id, word: word.to_string(), match_type: *match_type })
            .collect();
        let (words, warnings) = SensitiveWords::compile(&list);
        let skipped: Vec<&str> = warnings.iter().map(|w| w.split(' ').nth(2).unwrap()).collect();
        assert_eq!(skipped, ["1", "3", "4", "5", "7"], "{warnings:?}");
        assert!(warnings.iter().all(|w| w.contains("skipped")), "{warnings:?}");
        assert_eq!(find(&words, &["is it OK?"]).map(|h| h.0), Some("ok".to_string()));
        assert_eq!(find(&words, &["fine7"]).map(|h| h.0), Some("fine\\d".to_string()));
        assert_eq!(find(&words, &["a", "b", "plain"]), None);
    }

    #[test]
    fn checks_only_what_user_texts_returns() {
        let words = compile(&[("forbidden", Contains), ("ASSISTANT_ONLY", Contains), ("SCHEMA_ONLY", Contains)]);
        let cases: &[(&str, Option<&str>)] = &[
            (r#"{"messages":[{"role":"user","content":"a \u0066orbidden word"}]}"#, Some("a forbidden word")),
            (r#"{"messages":[{"role":"assistant","content":"forbidden"}]}"#, None),
            (r#"{"tools":[{"name":"t","description":"forbidden"}],"messages":[{"role":"user","content":"hi"}]}"#, None),
            (r#"{"messages":[{"role":"user","content":[{"type":"tool_result","content":"forbidden"}]}]}"#, None),
        ];
        for (body, want) in cases {
            let texts = user_texts(Endpoint::AnthropicMessages, body.as_bytes()).unwrap();
            assert_eq!(words.find(&texts).map(|h| h.matched_text), want.map(str::to_string), "{body}");
        }
        let (body, _) = samples::claude_code_body();
        let texts = user_texts(Endpoint::AnthropicMessages, &body).unwrap();
        assert_eq!(words.find(&texts), None);
    }

    #[test]
    fn matched_text_is_a_short_window() {
        let long = format!("{}needle{}", "a".repeat(100), "b".repeat(100));
        let (a, b, e, x) = ("a".repeat(20), "b".repeat(20), "é".repeat(20), "x".repeat(60));
        let cases: &[(&str, &str, WordMatch, String)] = &[
            (&long, "needle", Contains, format!("…{a}needle{b}…")),
            ("needle at start", "needle", Contains, "needle at start".into()),
            (&format!("éééé{e}X"), "x", Contains, format!("…{e}X")),
            // A long match is clipped, without context.
            (&long, r"a{90}needle", Re, format!("…{}…", "a".repeat(60))),
            (&"x".repeat(70), &"x".repeat(70), Exact, format!("{x}…")),
            ("xİy ok", "y", Contains, "xİy ok".into()),
        ];
        for (text, word, kind, want) in cases {
            let got = find(&compile(&[(word, *kind)]), &[text]).unwrap().2;
            assert_eq!(got, *want, "{word}");
            assert!(got.chars().count() <= MAX_MATCHED + 2);
        }
    }

    #[test]
    fn lowered_copies_only_where_needed() {
        let cases: &[(&str, Option<&str>)] = &[
            ("ASCII Only", None),
            ("中文，“引号”（全角）한국어 ｶﾀｶﾅ", None),
            ("Mixed ÄBC Über", Some("Mixed äbc über")),
            ("中文 ΣΟΦΊΑ", Some("中文 σοφία")),
        ];
        for (text, want) in cases {
            assert_eq!(lowered_copy(text).as_deref(), *want, "{text}");
        }
    }

    #[test]
    fn caseless_blocks_have_no_case() {
        for c in ('\u{80}'..=char::MAX).filter(|&c| is_caseless(c)) {
            assert!(c.to_lowercase().eq(std::iter::once(c)), "{c:?}");
        }
    }

    #[test]
    fn spans_map_back_through_lowercasing() {
        // 'İ' lowercases to two characters (3 bytes).
        let cases: &[(&str, &str, (usize, usize))] =
            &[("xİy", "y", (3, 4)), ("xİy", "i", (1, 3)), ("ÄBC", "bc", (2, 4)), ("ab", "b", (1, 2))];
        for (text, word, want) in cases {
            let low = lowercase(text);
            let start = low.find(word).unwrap();
            assert_eq!(original_span(text, start, start + word.len()), *want, "{text} {word}");
        }
    }

    /// The same words with every regex run on every text.
    fn unfiltered(words: &SensitiveWords) -> SensitiveWords {
        let mut all = words.clone();
        all.regexes.iter_mut().for_each(|r| r.prefilter = Prefilter::Always);
        all
    }

    #[test]
    fn regexes_get_a_prefilter() {
        let words = compile(&[
            (r"(?i)password\s*[:=]\s*\S{6,}", Re),
            (r"\b\d{3}-\d{2}-\d{4}\b", Re),
            (r"AKIA[0-9A-Z]{16}", Re),
            (r"(abc|de)\d", Re),
            ("codename[-_ ]?(falcon|osprey)", Re),
        ]);
        let prefilters: Vec<&Prefilter> = words.regexes.iter().map(|r| &r.prefilter).collect();
        let literals = |ids: &[usize]| Prefilter::Literals(ids.to_vec());
        assert_eq!(prefilters, [&literals(&[0]), &Prefilter::Set(0), &literals(&[1]), &Prefilter::Set(1), &literals(&[2])]);
        assert_eq!(words.literal_count, 3);
        assert_eq!(words.unseen, ['ſ']);
    }

    /// The prefilter (literals, the set, unseen characters) never changes
    /// what `find` says, on many generated texts.
    #[test]
    fn prefilter_agrees_with_running_every_regex() {
        let patterns = [
            "colou?r", r"api[-_]?key\s*=", "a(bc|de)fgh", "passwd|password", r"sk-ant-[a-z0-9]{4}", r"foo\.bar",
            "abc+de", "ÄRGER", r"\bword\b", "x{2}abc", "[]x]yyy", r"(password|secret)\s*=", r"\b(foo|barbaz)\b",
            "a(b(cde|fgh)i)j", "(?P<n>sec)ret", r"\b\d{3}-\d{2}-\d{4}\b", r"(?i)password\s*[:=]\s*\S{2,}",
            "σοφία", "straße", r"k\d", "(?-i:Key)s", r"kelvin\d", r"\w+@\w+\.z", "机密文件",
        ];
        let pieces = [
            "color", "COLOUR", "API_KEY =", "apikey=", "adefgh", "abcfgh", "PASSWORD", "passw", "sk-ant-ab12",
            "foo.bar", "abcccde", "ärger", "ÄRGER", "arger", "a word.", "swordfish", "xxabc", "]yyy", "SECRET =",
            "secret", " foo ", "barbaz!", "abcdeij", "abfghij", "123-45-6789", "1234-45-6789", "pa\u{17f}\u{17f}word:",
            "ΣΟΦΊΑ", "σοφίας", "ſecret=", "\u{212a}elvin7", "KELVIN7", "STRASSE", "STRAẞE", "Keys", "keys", "k9",
            "a@b.z", "机密文件", "é", " ", "-", "=", ":", "x", "é1", "İ",
        ];
        let words: Vec<(&str, WordMatch)> = patterns.iter().map(|p| (*p, Re)).collect();
        let mut rng = samples::XorShift(0x2545_F491_4F6C_DD1Du64);
        let mut next = |n: usize| rng.below(n);
        // Each pattern alone, then all together (order decides the hit).
        let mut lists: Vec<Vec<(&str, WordMatch)>> = words.iter().map(|w| vec![*w]).collect();
        lists.push(words.clone());
        lists.push(words.iter().rev().copied().collect());
        let compiled: Vec<(SensitiveWords, SensitiveWords)> = lists
            .iter()
            .map(|list| {
                let words = compile(list);
                let all = unfiltered(&words);
                (words, all)
            })
            .collect();
        let mut hits = 0;
        for _ in 0..3000 {
            let texts: Vec<String> = (0..1 + next(3))
                .map(|_| (0..1 + next(4)).map(|_| pieces[next(pieces.len())]).collect::<Vec<_>>().join(""))
                .collect();
            let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
            for (words, all) in &compiled {
                let want = find(all, &texts);
                hits += usize::from(want.is_some());
                assert_eq!(find(words, &texts), want, "{texts:?}");
            }
        }
        assert!(hits > 3000, "{hits}");
    }

    #[test]
    fn replies_in_both_languages() {
        let hit = Hit { word: "secret".into(), match_type: Contains, matched_text: "my secret plan".into() };
        let en = hit.reply(Locale::En);
        assert_eq!((en.status, en.code), (400, "sensitive_word"));
        assert_eq!(
            en.message,
            "Request contains the sensitive word \"secret\" (match type: contains, matched text: \"my secret plan\"). \
             Please edit the request and retry."
        );
        assert_eq!(en.details.get("word"), Some(&json!("secret")));
        assert_eq!(en.details.get("match_type"), Some(&json!("contains")));
        assert_eq!(en.details.get("matched_text"), Some(&json!("my secret plan")));
        let zh = Hit { match_type: Re, ..hit.clone() }.reply(Locale::ZhCn);
        assert_eq!(zh.message, "请求包含敏感词：\"secret\"，匹配内容：\"my secret plan\"，匹配类型：正则匹配，请修改后重试。");
        assert_eq!(zh.details.get("match_type"), Some(&json!("regex")));
        assert_eq!(
            Hit { match_type: Exact, ..hit }.blocked_reason(),
            json!({"word": "secret", "match_type": "exact", "matched_text": "my secret plan"})
        );
    }

    /// Prints the cost of a 115 KB Claude Code request against 1,000
    /// contains, 1,000 exact and 50 regex words (none matching). Run with
    /// `cargo test -p hubgate-core --release -- --ignored --nocapture word_scan_cost`.
    #[test]
    #[ignore]
    fn word_scan_cost() {
        use std::time::Instant;

        use crate::body_text::samples::token;
        let mut list = Vec::new();
        for i in 0..1000u64 {
            list.push((token(i, 6 + (i % 9) as usize), Contains));
            list.push((format!("{} {}", token(5000 + i, 5), token(9000 + i, 7)), Exact));
        }
        for i in 0..45u64 {
            list.push((format!(r"{}[-_ ]?(key|token)\s*[:=]\s*\w+", token(20_000 + i, 5)), Re));
        }
        // No literal: these run over every text.
        for pattern in [r"\b\d{4}[ -]?\d{4}[ -]?\d{4}[ -]?\d{4}\b", r"\d{3}-\d{2}-\d{4}", "[a-z]{30}", r"\w+@\w+\.z", "(ab|cd)[0-9]"] {
            list.push((pattern.to_string(), Re));
        }
        let list: Vec<SensitiveWord> = list
            .into_iter()
            .zip(1..)
            .map(|((word, match_type), id)| SensitiveWord { id, word, match_type })
            .collect();
        let started = Instant::now();
        let (words, warnings) = SensitiveWords::compile(&list);
        let compile_time = started.elapsed();
        assert!(warnings.is_empty(), "{warnings:?}");
        let (without_regex, _) = SensitiveWords::compile(&list[..2000]);
        let (literal_regexes, _) = SensitiveWords::compile(&list[..2045]);

        let (body, _) = samples::claude_code_body();
        // The same request with Chinese user and system texts.
        let chinese = String::from_utf8(body.clone()).unwrap().replace("the file", "请检查这个文件").replace("user", "用户");
        let time = samples::time;
        println!("body {} bytes; compile {:.1} ms", body.len(), compile_time.as_secs_f64() * 1e3);
        assert_eq!(words.regexes.iter().filter(|r| matches!(r.prefilter, Prefilter::Set(_))).count(), 5);
        let automaton = words.automaton.as_ref().unwrap();
        println!("automaton: {:?}, {} KiB", automaton.kind(), automaton.memory_usage() / 1024);
        let texts = user_texts(Endpoint::AnthropicMessages, &body).unwrap();
        println!("texts: {} of {} bytes", texts.len(), texts.iter().map(|t| t.len()).sum::<usize>());
        time("user_texts", &|| assert!(!user_texts(Endpoint::AnthropicMessages, &body).unwrap().is_empty()));
        time("find, contains + exact", &|| assert!(without_regex.find(&texts).is_none()));
        time("find, + 45 regexes with literals", &|| assert!(literal_regexes.find(&texts).is_none()));
        time("find, all (+ 5 regexes without literals)", &|| assert!(words.find(&texts).is_none()));
        time("user_texts + find, contains + exact + 45 regexes", &|| {
            let texts = user_texts(Endpoint::AnthropicMessages, &body).unwrap();
            assert!(literal_regexes.find(&texts).is_none());
        });
        let texts = user_texts(Endpoint::AnthropicMessages, chinese.as_bytes()).unwrap();
        time("chinese body: find, + 45 regexes with literals", &|| assert!(literal_regexes.find(&texts).is_none()));
    }

    /// The bench's regex words (tests/e2e/src/bin/hubgate-bench.rs).
    pub(crate) const REGEXES: [&str; 50] = [
        r"AKIA[0-9A-Z]{16}", r"ASIA[0-9A-Z]{16}", r"(?i)aws_secret_access_key\s*=\s*[A-Za-z0-9/+=]{40}",
        r"ghp_[A-Za-z0-9]{36}", r"gho_[A-Za-z0-9]{36}", r"ghs_[A-Za-z0-9]{36}", r"github_pat_[A-Za-z0-9_]{40,}",
        r"glpat-[A-Za-z0-9_-]{20}", r"xox[baprs]-[A-Za-z0-9-]{10,}", r"sk-ant-api\d{2}-[A-Za-z0-9_-]{20,}",
        r"sk-proj-[A-Za-z0-9_-]{20,}", r"AIza[0-9A-Za-z_-]{35}", r"ya29\.[0-9A-Za-z_-]{20,}",
        r"-----BEGIN (RSA |EC |OPENSSH |DSA )?PRIVATE KEY-----", r"-----BEGIN PGP PRIVATE KEY BLOCK-----",
        r"sk_live_[0-9a-zA-Z]{24,}", r"rk_live_[0-9a-zA-Z]{24,}", r"SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}",
        r"hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]+",
        r"discord(app)?\.com/api/webhooks/\d+/[A-Za-z0-9_-]+", r"npm_[A-Za-z0-9]{36}",
        r"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,}", r"dop_v1_[a-f0-9]{64}", r"shpat_[a-fA-F0-9]{32}",
        r"hf_[A-Za-z0-9]{34}", r"r8_[A-Za-z0-9]{37}", r"xai-[A-Za-z0-9]{32,}", r"gsk_[A-Za-z0-9]{48,}",
        r"AccountKey=[A-Za-z0-9+/=]{40,}", r"SharedAccessSignature=[^;\s]+",
        r"eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}", r"(?i)password\s*[:=]\s*\S{6,}",
        r"(?i)api[-_ ]?token\s*[:=]\s*[A-Za-z0-9]{16,}", r"(?i)client[-_]secret\s*[:=]\s*\S{8,}",
        r"(?i)bearer\s+[A-Za-z0-9._-]{30,}", r"mongodb(\+srv)?://[^:\s]+:[^@\s]+@",
        r"postgres(ql)?://[^:\s]+:[^@\s]+@", r"mysql://[^:\s]+:[^@\s]+@", r"redis://:[^@\s]+@",
        r"amqps?://[^:\s]+:[^@\s]+@", r"(?i)internal[-_ ]only[-_ ]\d+", r"(?i)codename[-_ ]?(falcon|osprey|kestrel)\d*",
        r"(?i)project[-_ ]nightjar[-_ ]v\d+", r"(?i)do[-_ ]not[-_ ]distribute[-_ ]\d{4}",
        r"(?i)employee[-_ ]id[:=]\s*E\d{6}", r"\b\d{3}-\d{2}-\d{4}\b", r"\b4\d{3}[ -]?\d{4}[ -]?\d{4}[ -]?\d{4}\b",
        r"\b5[1-5]\d{2}[ -]?\d{4}[ -]?\d{4}[ -]?\d{4}\b", r"\b(?:\d{1,3}\.){3}\d{1,3}:\d{2,5}\b", r"secret[-_ ]?key\d+",
    ];

    /// The bench's word list (tests/e2e hubgate-bench: 1,000 contains,
    /// 1,000 exact, its 50 regexes) against a 115 KB Claude Code request
    /// that holds none. Run with `cargo test -p hubgate-core --release --
    /// --ignored --nocapture bench_words_cost`.
    #[test]
    #[ignore]
    fn bench_words_cost() {
        use std::time::Instant;
        use crate::body_text::samples::token;
        let (body, _) = samples::claude_code_body();
        let haystack = String::from_utf8_lossy(&body).to_lowercase();
        let mut list: Vec<(String, WordMatch)> = Vec::new();
        let mut seed = 0u64;
        while list.len() < 1000 {
            seed += 1;
            let word = token(seed, 6 + (seed % 9) as usize);
            if !haystack.contains(&word) {
                list.push((word, Contains));
            }
        }
        for i in 0..1000u64 {
            list.push((format!("{} {}", token(50_000 + i, 5), token(90_000 + i, 7)), Exact));
        }
        list.extend(REGEXES.iter().map(|r| (r.to_string(), Re)));
        let list: Vec<SensitiveWord> =
            list.into_iter().zip(1..).map(|((word, match_type), id)| SensitiveWord { id, word, match_type }).collect();
        let started = Instant::now();
        let (words, warnings) = SensitiveWords::compile(&list);
        let compile_time = started.elapsed();
        assert!(warnings.is_empty(), "{warnings:?}");
        let (regexes_only, _) = SensitiveWords::compile(&list[2000..]);
        let texts = user_texts(Endpoint::AnthropicMessages, &body).unwrap();
        let time = samples::time;
        println!("body {} bytes, {} texts of {} bytes; compile {:.1} ms", body.len(), texts.len(),
                 texts.iter().map(|t| t.len()).sum::<usize>(), compile_time.as_secs_f64() * 1e3);
        time("bench words: find (1,000 contains + 1,000 exact + 50 regexes)", &|| assert!(words.find(&texts).is_none()));
        time("bench words: find, 50 regexes only", &|| assert!(regexes_only.find(&texts).is_none()));
    }
}
