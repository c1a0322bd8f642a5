//! Literals that every match of a regex contains, read from its syntax tree
//! (`hubgate_wire::pattern::parse`), for a prefilter: one Aho-Corasick pass
//! finds them in a text, and a regex runs only where one of its own is.
//!
//! Literals are given as the prefilter sees text (`Fold`). A case class
//! (what `(?i)a` becomes) counts as one character when its members look
//! the same there; a member that does not (`ſ` in `(?i)s`) must be absent
//! for the prefilter to be used: it is listed in `Required::unseen`.

use regex_syntax::hir::{Class, Hir, HirKind};

/// Shorter literals would be found in nearly every text.
pub const MIN_LITERAL: usize = 3;
/// More literals than this make the prefilter not worth it.
const MAX_LITERALS: usize = 64;
/// Classes with more members than this are no case class.
const MAX_CASE_VARIANTS: u32 = 4;

/// How the prefilter sees a text's characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fold {
    /// Lowercased: ASCII by the automaton, other letters in a lowered copy
    /// (`lower` below).
    Lower,
    /// As they are, ASCII case aside (a raw JSON body).
    Ascii,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Required {
    /// Every match contains one of these, as the prefilter sees text.
    pub literals: Vec<String>,
    /// A text with one of these characters may match without showing a
    /// literal: the regex must run on it.
    pub unseen: Vec<char>,
}

/// The literals (≥ `MIN_LITERAL` bytes) of which every match of `hir`
/// contains one; `None` when no such set is known.
pub fn required(hir: &Hir, fold: Fold) -> Option<Required> {
    let mut unseen = Vec::new();
    let literals = analyse(hir, fold, &mut unseen).required?;
    unseen.sort_unstable();
    unseen.dedup();
    Some(Required { literals, unseen })
}

/// How the prefilter sees `c`, lowercased: as the automaton (ASCII) and the
/// lowered copy of a text (the rest) see it.
pub fn lower(c: char, out: &mut String) {
    if c.is_ascii() {
        out.push(c.to_ascii_lowercase());
    } else {
        out.extend(c.to_lowercase());
    }
}

struct Info {
    /// Every match is exactly this text.
    exact: Option<String>,
    /// Every match contains one of these (all long enough).
    required: Option<Vec<String>>,
}

impl Info {
    fn exact(text: String) -> Info {
        let required = (text.len() >= MIN_LITERAL).then(|| vec![text.clone()]);
        Info { exact: Some(text), required }
    }

    fn unknown() -> Info {
        Info { exact: None, required: None }
    }
}

fn analyse(hir: &Hir, fold: Fold, unseen: &mut Vec<char>) -> Info {
    match hir.kind() {
        // Zero-width: adjacent literals stay adjacent.
        HirKind::Empty | HirKind::Look(_) => Info::exact(String::new()),
        HirKind::Literal(literal) => match std::str::from_utf8(&literal.0) {
            Ok(text) => Info::exact(seen_as(text, fold)),
            Err(_) => Info::unknown(),
        },
        HirKind::Class(class) => match case_class(class, fold, unseen) {
            Some(text) => Info::exact(text),
            None => Info::unknown(),
        },
        HirKind::Capture(capture) => analyse(&capture.sub, fold, unseen),
        HirKind::Repetition(repetition) if repetition.min >= 1 => {
            let sub = analyse(&repetition.sub, fold, unseen);
            Info { exact: None, required: sub.required }
        }
        HirKind::Repetition(_) => Info::unknown(),
        HirKind::Concat(subs) => {
            let mut best: Option<Vec<String>> = None;
            let mut run = Some(String::new());
            let mut whole = Some(String::new());
            for sub in subs {
                let info = analyse(sub, fold, unseen);
                match (&info.exact, run.as_mut()) {
                    (Some(text), Some(run)) => run.push_str(text),
                    (Some(text), None) => run = Some(text.clone()),
                    (None, _) => {
                        if let Some(run) = run.take() {
                            keep_better(&mut best, Info::exact(run).required);
                        }
                    }
                }
                match (&info.exact, whole.as_mut()) {
                    (Some(text), Some(whole)) => whole.push_str(text),
                    _ => whole = None,
                }
                keep_better(&mut best, info.required);
            }
            if let Some(whole) = whole {
                return Info::exact(whole);
            }
            if let Some(run) = run {
                keep_better(&mut best, Info::exact(run).required);
            }
            Info { exact: None, required: best }
        }
        HirKind::Alternation(subs) => {
            let mut all = Vec::new();
            for sub in subs {
                let Some(literals) = analyse(sub, fold, unseen).required else {
                    return Info::unknown();
                };
                for literal in literals {
                    if !all.contains(&literal) {
                        all.push(literal);
                    }
                }
            }
            Info { exact: None, required: (all.len() <= MAX_LITERALS).then_some(all) }
        }
    }
}

/// Longer shortest literal first, then fewer literals.
fn keep_better(best: &mut Option<Vec<String>>, candidate: Option<Vec<String>>) {
    let Some(candidate) = candidate else { return };
    let key = |set: &[String]| (set.iter().map(String::len).min().unwrap_or(0), std::cmp::Reverse(set.len()));
    if best.as_deref().is_none_or(|best| key(&candidate) > key(best)) {
        *best = Some(candidate);
    }
}

fn seen_as(text: &str, fold: Fold) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        seen_char(c, fold, &mut out);
    }
    out
}

fn seen_char(c: char, fold: Fold, out: &mut String) {
    match fold {
        Fold::Lower => lower(c, out),
        Fold::Ascii => out.push(c.to_ascii_lowercase()),
    }
}

/// The text every member of `class` is seen as, if it is the case variants
/// of one character. Members seen otherwise (never ASCII ones) go to
/// `unseen`.
fn case_class(class: &Class, fold: Fold, unseen: &mut Vec<char>) -> Option<String> {
    let members: Vec<char> = match class {
        Class::Unicode(class) => {
            let count: u32 = class.ranges().iter().map(|r| u32::from(r.end()) - u32::from(r.start()) + 1).sum();
            if count > MAX_CASE_VARIANTS {
                return None;
            }
            class.ranges().iter().flat_map(|r| r.start()..=r.end()).collect()
        }
        Class::Bytes(class) => {
            let count: u32 = class.ranges().iter().map(|r| u32::from(r.end()) - u32::from(r.start()) + 1).sum();
            if count > MAX_CASE_VARIANTS || class.ranges().iter().any(|r| !r.end().is_ascii()) {
                return None;
            }
            class.ranges().iter().flat_map(|r| r.start()..=r.end()).map(char::from).collect()
        }
    };
    let views: Vec<String> = members
        .iter()
        .map(|&c| {
            let mut view = String::new();
            seen_char(c, fold, &mut view);
            view
        })
        .collect();
    // The view most members share; ASCII members must all share it.
    let shared = |view: &String| views.iter().filter(|v| *v == view).count();
    let main = views.iter().max_by_key(|v| (shared(v), v.is_ascii()))?.clone();
    let mut odd = Vec::new();
    for (&c, view) in members.iter().zip(&views) {
        if *view != main {
            if c.is_ascii() {
                return None;
            }
            odd.push(c);
        }
    }
    unseen.extend(odd);
    Some(main)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hubgate_wire::pattern::{parse, PatternUse};

    type Case<'a> = (&'a str, Option<(&'a [&'a str], &'a [char])>);

    fn literals(pattern: &str, kind: PatternUse, fold: Fold) -> Option<(Vec<String>, Vec<char>)> {
        let hir = parse(pattern, kind).unwrap();
        required(&hir, fold).map(|r| (r.literals, r.unseen))
    }

    #[test]
    fn case_insensitive_word_literals() {
        let none: &[char] = &[];
        let cases: &[Case] = &[
            ("secret", Some((&["secret"], &['ſ']))),
            ("(?i)password", Some((&["password"], &['ſ']))),
            ("Secret", Some((&["secret"], &['ſ']))),
            ("colou?r", Some((&["colo"], none))),
            (r"\d+token", Some((&["token"], none))),
            (r"api[-_]?key\s*=", Some((&["api"], none))),
            (r"foo\.bar", Some((&["foo.bar"], none))),
            ("abc+de", None),
            ("x{2}abc", Some((&["abc"], none))),
            (r"(password|secret)\s*=", Some((&["password", "secret"], &['ſ']))),
            (r"\b(foo|barbaz)\b", Some((&["foo", "barbaz"], none))),
            ("(?:abc|de)fgh", Some((&["fgh"], none))),
            ("a(b(cde|fgh)i)j", Some((&["cde", "fgh"], none))),
            ("(?P<x>sec)ret", Some((&["secret"], &['ſ']))),
            ("(abc)*def", Some((&["def"], none))),
            ("(abc)+", Some((&["abc"], none))),
            ("(abc|de)", None),
            ("(abc|)", None),
            ("(abc)?", None),
            ("^begin$", Some((&["begin"], none))),
            ("[abc]def[^]x]ghij", Some((&["ghij"], none))),
            ("passwd|password|secret_key", Some((&["passwd", "password", "secret_key"], &['ſ']))),
            ("sk-ant-[a-z0-9]{20}", Some((&["sk-ant-"], &['ſ']))),
            (r"\bword\b", Some((&["word"], none))),
            (r"\x41bcd", Some((&["abcd"], none))),
            ("(?x) a b c d", Some((&["abcd"], none))),
            ("(?-i:AbC)d", Some((&["abcd"], none))),
            ("secret|ab", None),
            (r"\d{3}-\d{4}", None),
            (".*", None),
            ("[a-z]{30}", None),
            // Non-ASCII: seen lowercased, as in a lowered copy.
            ("ÄRGER", Some((&["ärger"], none))),
            ("机密文件", Some((&["机密文件"], none))),
            ("机密", Some((&["机密"], none))),
            ("ΣΟΦΊΑ", Some((&["σοφία"], &['ς', 'ϕ']))),
            ("straße", Some((&["straße"], &['ſ']))),
        ];
        for (pattern, want) in cases {
            let want = want.map(|(l, u)| (l.iter().map(|s| s.to_string()).collect(), u.to_vec()));
            assert_eq!(literals(pattern, PatternUse::SensitiveWord, Fold::Lower), want, "{pattern}");
        }
    }

    #[test]
    fn raw_body_literals() {
        let none: &[char] = &[];
        let cases: &[Case] = &[
            (r"(?i)\b[a-z0-9-]+\.corp\.acme\.internal\b", Some((&[".corp.acme.internal"], none))),
            (r"(?i)jira\.acme\.com/browse/[A-Z]+-\d+", Some((&["jira.acme.com/browse/"], &['ſ']))),
            (r"/home/[a-z]+/\.ssh/id_[a-z0-9]+", Some((&["/.ssh/id_"], none))),
            (r"\b10\.20\.\d{1,3}\.\d{1,3}\b", Some((&["10.20."], none))),
            // Case-sensitive literals, seen with ASCII case ignored.
            (r"Sk-Ant-[a-z]+", Some((&["sk-ant-"], none))),
            ("(?i)sk", None),
            ("(?i)ask", Some((&["ask"], &['\u{17f}', '\u{212a}']))),
            // A raw body is not lowercased: `Ä` is only seen as itself.
            ("ÄRGER", Some((&["Ärger"], none))),
            ("(?i)ärger", Some((&["ärger"], &['Ä']))),
            ("cat|dog", Some((&["cat", "dog"], none))),
            (r"\d+", None),
        ];
        for (pattern, want) in cases {
            let want = want.map(|(l, u)| (l.iter().map(|s| s.to_string()).collect(), u.to_vec()));
            assert_eq!(literals(pattern, PatternUse::RequestFilter, Fold::Ascii), want, "{pattern}");
        }
    }
}
