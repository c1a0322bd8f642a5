//! Guard 2: sensitive words (SPEC §2.2). The word list is compiled once per
//! snapshot; a request only scans the texts of `body_text::user_texts`, the
//! cheapest matchers first: contains, then exact, then regex.
//!
//! Matching ignores case, non-ASCII included. The automaton and regex-lite
//! fold ASCII case only, so a text with other cased characters is matched in
//! a lowercased copy; other texts (ASCII, Chinese…) are scanned in place.

use std::borrow::Cow;
use std::collections::HashMap;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use hubgate_wire::{SensitiveWord, WordMatch};
use regex_lite::{Regex, RegexBuilder};
use serde_json::{json, Value};

use crate::body_text::user_texts;
use crate::chain::{Cx, Guard, Step};
use crate::locale::Locale;
use crate::reply::LocalReply;

/// Compiled size bound of one regex (regex-lite's own default is 10 MiB).
const REGEX_SIZE_LIMIT: usize = 256 * 1024;
/// Above this the automaton is an NFA: half the speed, a tenth the memory.
/// A DFA of 1,000 words takes about 2 MiB.
const DFA_MEMORY_LIMIT: usize = 4 * 1024 * 1024;
/// Characters of context either side of the match in `Hit::matched_text`.
const CONTEXT: usize = 20;
/// Characters of `Hit::matched_text`, "…" marks aside.
const MAX_MATCHED: usize = 60;
/// Shorter required literals (bytes) would be found in nearly every text.
const MIN_LITERAL: usize = 3;

#[derive(Debug, Clone, Default)]
pub struct SensitiveWords {
    /// Every `contains` word and every regex literal, lowercased, so that
    /// one pass per text finds both. Pattern `i` is `contains_words[i]`,
    /// and past those, literal `i - contains_words.len()`.
    automaton: Option<AhoCorasick>,
    contains_words: Vec<String>,
    /// Byte length of the longest lowercased contains word.
    longest_contains: usize,
    literal_count: usize,
    /// Trimmed, lowercased `exact` word → the word as configured.
    exact: HashMap<String, String>,
    /// Byte length of the longest key of `exact`.
    longest_exact: usize,
    regexes: Vec<RegexWord>,
}

#[derive(Debug, Clone)]
struct RegexWord {
    word: String,
    regex: Regex,
    /// The pattern had non-ASCII characters; they were lowercased, and the
    /// regex runs over the lowercased copy of texts that have one.
    folded: bool,
    /// Literal ids: every match contains at least one of these literals.
    /// Empty when none is known: the regex runs on every text.
    literals: Vec<usize>,
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
        let mut patterns = Vec::new();
        let mut contains_ids = Vec::new();
        let mut literals = Vec::new();
        for w in words {
            if w.word.trim().is_empty() {
                warnings.push(format!("sensitive word {} skipped: the word is blank", w.id));
                continue;
            }
            match w.match_type {
                WordMatch::Contains => {
                    let pattern = lowercase(&w.word);
                    compiled.longest_contains = compiled.longest_contains.max(pattern.len());
                    patterns.push(pattern);
                    contains_ids.push(w.id);
                    compiled.contains_words.push(w.word.clone());
                }
                WordMatch::Exact => {
                    let key = lowercase(w.word.trim());
                    compiled.longest_exact = compiled.longest_exact.max(key.len());
                    compiled.exact.entry(key).or_insert_with(|| w.word.clone());
                }
                WordMatch::Regex => match compile_regex(&w.word) {
                    Ok((regex, folded)) => {
                        let ids = required_literals(regex.as_str())
                            .unwrap_or_default()
                            .into_iter()
                            .map(|literal| {
                                literals.push(literal);
                                literals.len() - 1
                            })
                            .collect();
                        compiled.regexes.push(RegexWord { word: w.word.clone(), regex, folded, literals: ids });
                    }
                    Err(reason) => warnings.push(format!("sensitive word {} skipped: {reason}", w.id)),
                },
            }
        }
        compiled.literal_count = literals.len();
        patterns.extend(literals);
        if !patterns.is_empty() {
            match automaton(&patterns) {
                Ok(automaton) => compiled.automaton = Some(automaton),
                Err(err) => {
                    if !contains_ids.is_empty() {
                        warnings.push(format!("sensitive words {contains_ids:?} skipped: {err}"));
                    }
                    compiled.contains_words.clear();
                    // Without the prefilter every regex runs on every text.
                    compiled.literal_count = 0;
                    compiled.regexes.iter_mut().for_each(|r| r.literals.clear());
                }
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
        let needs_lowered = self.automaton.is_some() || self.regexes.iter().any(|r| r.folded);
        let lowered: Vec<Option<String>> =
            texts.iter().map(|text| if needs_lowered { lowered_copy(text) } else { None }).collect();
        // Which regex literals each text has, found in the contains pass.
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
            texts.iter().zip(&lowered).enumerate().find_map(|(i, (text, low))| {
                let seen = seen.get(i * count..(i + 1) * count).unwrap_or_default();
                self.find_regex(text, low.as_deref(), seen)
            })
        })
    }

    /// One pass over a text: its leftmost contains word (the one listed
    /// first, among those starting there); and the literals seen.
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

    fn find_regex(&self, text: &str, low: Option<&str>, seen: &[bool]) -> Option<Hit> {
        self.regexes.iter().find_map(|r| {
            if !r.literals.is_empty() && !r.literals.iter().any(|&id| seen.get(id) == Some(&true)) {
                return None;
            }
            let (start, end) = match low {
                Some(low) if r.folded => {
                    let m = r.regex.find(low)?;
                    original_span(text, m.start(), m.end())
                }
                _ => {
                    let m = r.regex.find(text)?;
                    (m.start(), m.end())
                }
            };
            Some(Hit { word: r.word.clone(), match_type: WordMatch::Regex, matched_text: snippet(text, start, end) })
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

/// Searched for all matches, overlapping ones included (so no literal hides
/// behind another). A DFA where it is small enough: the crate would pick an
/// NFA beyond 100 patterns, which scans about half as fast.
fn automaton(patterns: &[String]) -> Result<AhoCorasick, aho_corasick::BuildError> {
    let mut builder = AhoCorasick::builder();
    builder.match_kind(MatchKind::Standard).ascii_case_insensitive(true);
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

/// Case-insensitive, size-bounded. A pattern that matches empty text would
/// block every request, so it is refused like an invalid one.
fn compile_regex(pattern: &str) -> Result<(Regex, bool), String> {
    let build = |p: &str| RegexBuilder::new(p).case_insensitive(true).size_limit(REGEX_SIZE_LIMIT).build();
    let regex = build(pattern).map_err(|err| format!("invalid regex: {err}"))?;
    if regex.is_match("") {
        return Err("the regex matches empty text".to_string());
    }
    if pattern.is_ascii() {
        return Ok((regex, false));
    }
    // Non-ASCII characters are always literals (all syntax is ASCII), so
    // lowercasing them keeps the pattern's meaning for lowercased text.
    let mut lowered = String::with_capacity(pattern.len());
    for c in pattern.chars() {
        if c.is_ascii() {
            lowered.push(c);
        } else {
            lowered.extend(c.to_lowercase());
        }
    }
    Ok(match build(&lowered) {
        Ok(folded) => (folded, true),
        Err(_) => (regex, false),
    })
}

/// Lowercased literals of which every match of `pattern` contains at least
/// one: for each alternative, its longest run of plain characters that no
/// quantifier makes optional, or a group's own such literals, whichever has
/// the longer shortest literal. `None` when some alternative has none of
/// `MIN_LITERAL` bytes, or the pattern uses syntax not followed here (`\x`,
/// `(?x)`…): then the regex runs on every text.
fn required_literals(pattern: &str) -> Option<Vec<String>> {
    let chars: Vec<char> = pattern.chars().collect();
    if has_verbose_flag(&chars) {
        return None;
    }
    Some(required(&chars)?.iter().map(|literal| lowercase(literal)).collect())
}

fn required(chars: &[char]) -> Option<Vec<String>> {
    let mut literals = Vec::new();
    // The best requirement of the current alternative: any one of these.
    let mut best = Vec::new();
    let mut run = String::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        let (atom, group, next) = match c {
            '|' => {
                keep(&mut best, vec![std::mem::take(&mut run)]);
                literals.extend(long_enough(std::mem::take(&mut best))?);
                i += 1;
                continue;
            }
            '\\' => match *chars.get(i + 1)? {
                'x' | 'u' | 'U' | 'p' | 'P' => return None,
                e if e.is_ascii_alphanumeric() || e == '<' || e == '>' => (None, Vec::new(), i + 2),
                e => (Some(e), Vec::new(), i + 2),
            },
            '(' => {
                let end = skip_group(chars, i)?;
                let group = group_body(chars.get(i..end)?).and_then(required).unwrap_or_default();
                (None, group, end)
            }
            '[' => (None, Vec::new(), skip_class(chars, i)?),
            '.' | '^' | '$' => (None, Vec::new(), i + 1),
            ')' | ']' | '}' | '*' | '+' | '?' | '{' => return None,
            c => (Some(c), Vec::new(), i + 1),
        };
        let quantifier = chars.get(next).copied();
        let optional = matches!(quantifier, Some('?' | '*' | '{'));
        if let Some(a) = atom.filter(|_| !optional) {
            run.push(a);
        }
        // What follows a repeated atom is not always right after it.
        if atom.is_none() || matches!(quantifier, Some('?' | '*' | '{' | '+')) {
            keep(&mut best, vec![std::mem::take(&mut run)]);
        }
        if !optional {
            keep(&mut best, group);
        }
        i = match quantifier {
            Some('{') => next + chars.get(next..)?.iter().position(|&c| c == '}')? + 1,
            Some('?' | '*' | '+') => next + 1,
            _ => next,
        };
        // A lazy quantifier (`a*?`) changes nothing here.
        if i > next && chars.get(i) == Some(&'?') {
            i += 1;
        }
    }
    keep(&mut best, vec![run]);
    literals.extend(long_enough(best)?);
    Some(literals)
}

/// Keeps the requirement whose shortest literal is longer.
fn keep(best: &mut Vec<String>, candidate: Vec<String>) {
    let shortest = |set: &[String]| set.iter().map(String::len).min().unwrap_or(0);
    if shortest(&candidate) > shortest(best) {
        *best = candidate;
    }
}

fn long_enough(literals: Vec<String>) -> Option<Vec<String>> {
    (!literals.is_empty() && literals.iter().all(|l| l.len() >= MIN_LITERAL)).then_some(literals)
}

/// The pattern inside a group (`(…)`, `(?:…)`, `(?i:…)`, `(?P<n>…)`);
/// `None` for a flag group such as `(?i)`.
fn group_body(group: &[char]) -> Option<&[char]> {
    let inner = group.get(1..group.len().checked_sub(1)?)?;
    let Some(rest) = inner.strip_prefix(&['?']) else {
        return Some(inner);
    };
    if let Some(named) = rest.strip_prefix(&['P', '<']).or_else(|| rest.strip_prefix(&['<'])) {
        return named.get(named.iter().position(|&c| c == '>')? + 1..);
    }
    rest.get(rest.iter().position(|&c| c == ':')? + 1..)
}

/// `(?x)` makes whitespace and `#` syntax. Group names aside, any `x` after
/// a `(?` counts, even where that is no flag group at all (`\(?x`).
fn has_verbose_flag(chars: &[char]) -> bool {
    chars.windows(2).enumerate().any(|(i, pair)| {
        pair == ['(', '?']
            && !matches!(chars.get(i + 2), Some('P' | '<'))
            && chars.iter().skip(i + 2).take_while(|&&c| c != ':' && c != ')').any(|&c| c == 'x')
    })
}

/// The index after the group opening at `start`.
fn skip_group(chars: &[char], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = start;
    while let Some(&c) = chars.get(i) {
        match c {
            '\\' => i += 1,
            '[' => {
                i = skip_class(chars, i)?;
                continue;
            }
            '(' => depth += 1,
            ')' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// The index after the class opening at `start` (classes nest; a `]` right
/// after `[` or `[^` is a literal).
fn skip_class(chars: &[char], start: usize) -> Option<usize> {
    let mut i = start + 1;
    if chars.get(i) == Some(&'^') {
        i += 1;
    }
    if chars.get(i) == Some(&']') {
        i += 1;
    }
    let mut depth = 1usize;
    while let Some(&c) = chars.get(i) {
        match c {
            '\\' => i += 1,
            '[' => depth += 1,
            ']' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
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
mod tests {
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

    #[test]
    fn required_literals_of_simple_patterns() {
        let cases: &[(&str, Option<&[&str]>)] = &[
            ("secret", Some(&["secret"])),
            ("Secret", Some(&["secret"])),
            ("colou?r", Some(&["colo"])),
            (r"\d+token", Some(&["token"])),
            (r"api[-_]?key\s*=", Some(&["api"])),
            (r"foo\.bar", Some(&["foo.bar"])),
            ("abc+de", Some(&["abc"])),
            ("ab+cd", None),
            ("x{2}abc", Some(&["abc"])),
            (r"(password|secret)\s*=", Some(&["password", "secret"])),
            (r"\b(foo|barbaz)\b", Some(&["foo", "barbaz"])),
            ("(?:abc|de)fgh", Some(&["fgh"])),
            ("a(b(cde|fgh)i)j", Some(&["cde", "fgh"])),
            ("(?<name>secret)", Some(&["secret"])),
            ("(?P<x>secret)", Some(&["secret"])),
            ("(?i:SECRET)x", Some(&["secret"])),
            ("(abc)*def", Some(&["def"])),
            ("(abc|de)", None),
            ("(abc|)", None),
            ("(abc)?", None),
            ("a(bc|de)fgh", Some(&["fgh"])),
            ("^begin$", Some(&["begin"])),
            ("[abc]def[^]x]ghij", Some(&["ghij"])),
            ("passwd|password|secret_key", Some(&["passwd", "password", "secret_key"])),
            ("sk-ant-[a-z0-9]{20}", Some(&["sk-ant-"])),
            ("(?i)abc", Some(&["abc"])),
            ("ab*?cde", Some(&["cde"])),
            ("ärger", Some(&["ärger"])),
            (r"\bword\b", Some(&["word"])),
            ("secret|ab", None),
            (r"\d{3}-\d{4}", None),
            (r"\x41bcd", None),
            ("(?x) a b c d", None),
            ("a b c d(?x)", None),
            (".*", None),
        ];
        for (pattern, want) in cases {
            let want = want.map(|w| w.iter().map(|s| s.to_string()).collect::<Vec<_>>());
            assert_eq!(required_literals(pattern), want, "{pattern}");
        }
    }

    /// The literal prefilter never hides a match the regex alone finds.
    #[test]
    fn prefilter_agrees_with_the_regex() {
        let patterns = [
            "colou?r", r"api[-_]?key\s*=", "a(bc|de)fgh", "passwd|password", r"sk-ant-[a-z0-9]{4}", r"foo\.bar",
            "abc+de", "ÄRGER", r"\bword\b", "x{2}abc", "[]x]yyy", r"(password|secret)\s*=", r"\b(foo|barbaz)\b",
            "a(b(cde|fgh)i)j", "(?P<n>sec)ret",
        ];
        let texts = [
            "color", "COLOUR", "colr", "API_KEY =", "apikey=", "api key=", "adefgh", "abcfgh", "afgh", "PASSWORD",
            "passw", "sk-ant-ab12", "sk-ant-", "foo.bar", "fooxbar", "abcccde", "abde", "ärger", "ÄRGER", "arger",
            "a word.", "swordfish", "xxabc", "xabc", "]yyy", "xyyy", "SECRET =", "secret", "x foo y", "food",
            "barbaz!", "abcdeij", "abfghij", "abcdij",
        ];
        for pattern in patterns {
            let words = compile(&[(pattern, Re)]);
            let mut unfiltered = words.clone();
            unfiltered.regexes.iter_mut().for_each(|r| r.literals.clear());
            assert!(words.regexes.iter().all(|r| !r.literals.is_empty()), "{pattern} has a literal");
            for text in texts {
                let expected = find(&unfiltered, &[text]).is_some();
                assert_eq!(find(&words, &[text]).is_some(), expected, "{pattern} on {text}");
            }
        }
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

        fn token(seed: u64, len: usize) -> String {
            let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    char::from(b'a' + (x % 26) as u8)
                })
                .collect()
        }
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
        // The machine is shared: the best of 30 batches is the least noisy.
        let time = |what: &str, f: &dyn Fn()| {
            let best = (0..30)
                .map(|_| {
                    let started = Instant::now();
                    for _ in 0..10 {
                        f();
                    }
                    started.elapsed().as_secs_f64() * 1e6 / 10.0
                })
                .fold(f64::INFINITY, f64::min);
            println!("{what}: {best:.1} µs");
        };
        println!("body {} bytes; compile {:.1} ms", body.len(), compile_time.as_secs_f64() * 1e3);
        assert_eq!(words.regexes.iter().filter(|r| r.literals.is_empty()).count(), 5);
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
}
