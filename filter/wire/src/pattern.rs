//! Admin-supplied regexes (sensitive words, request filters, model
//! redirects), compiled here the same way for the filter and for the
//! control plane's validation: what the control plane accepts, the filter
//! can compile.
//!
//! Word boundaries (`\b`, `\B`, `\b{start}`…) are ASCII ones, as they were
//! with regex-lite: a Unicode word boundary stops the lazy DFA at the first
//! non-ASCII byte of a text, and the slow fallback would run instead.
//! Classes (`\d`, `\w`, `\s`) and case folding are Unicode.

use regex::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};
use regex_syntax::hir::{Capture, Hir, HirKind, Look, Repetition};
use regex_syntax::ParserBuilder;

/// Bound of one compiled regex (its NFA).
pub const SIZE_LIMIT: usize = 1 << 20;
/// Bound of one regex's lazy DFA cache (and of its one-pass DFA). The
/// caches live in every worker VM, one per regex, and hostile texts can fill
/// them: 256 KiB keeps 100 regexes within ~25 MiB per VM.
pub const DFA_SIZE_LIMIT: usize = 256 << 10;
/// Bound of the `RegexSet` of all sensitive-word regexes without a literal.
pub const SET_SIZE_LIMIT: usize = 4 << 20;
/// Bound of that set's lazy DFA cache.
pub const SET_DFA_SIZE_LIMIT: usize = 1 << 20;
pub const NEST_LIMIT: u32 = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternUse {
    /// Case-insensitive; must not match empty text.
    SensitiveWord,
    RequestFilter,
    ModelRedirect,
}

impl PatternUse {
    pub fn case_insensitive(self) -> bool {
        self == PatternUse::SensitiveWord
    }
}

/// The syntax tree the regex is compiled from (word boundaries not yet made
/// ASCII): read it for literals.
pub fn parse(pattern: &str, kind: PatternUse) -> Result<Hir, String> {
    ParserBuilder::new()
        .case_insensitive(kind.case_insensitive())
        .nest_limit(NEST_LIMIT)
        .build()
        .parse(pattern)
        .map_err(|e| format!("invalid regex: {e}"))
}

/// Compiles `pattern` for `kind`, with the size limits.
pub fn compile(pattern: &str, kind: PatternUse) -> Result<Regex, String> {
    let hir = parse(pattern, kind)?;
    let regex = RegexBuilder::new(&ascii_word_boundaries(&hir).to_string())
        .size_limit(SIZE_LIMIT)
        .dfa_size_limit(DFA_SIZE_LIMIT)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(limit) => format!("regex too complex (over {limit} bytes compiled)"),
            e => format!("invalid regex: {e}"),
        })?;
    if kind == PatternUse::SensitiveWord && regex.is_match("") {
        return Err("the regex matches empty text".to_string());
    }
    Ok(regex)
}

/// One set of patterns that each compiled alone (`compile`).
pub fn compile_set(patterns: &[&str], kind: PatternUse) -> Result<RegexSet, String> {
    let printed = patterns
        .iter()
        .map(|p| parse(p, kind).map(|hir| ascii_word_boundaries(&hir).to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    RegexSetBuilder::new(printed)
        .size_limit(SET_SIZE_LIMIT)
        .dfa_size_limit(SET_DFA_SIZE_LIMIT)
        .build()
        .map_err(|e| e.to_string())
}

fn ascii_word_boundaries(hir: &Hir) -> Hir {
    match hir.kind() {
        HirKind::Look(look) => Hir::look(match *look {
            Look::WordUnicode => Look::WordAscii,
            Look::WordUnicodeNegate => Look::WordAsciiNegate,
            Look::WordStartUnicode => Look::WordStartAscii,
            Look::WordEndUnicode => Look::WordEndAscii,
            Look::WordStartHalfUnicode => Look::WordStartHalfAscii,
            Look::WordEndHalfUnicode => Look::WordEndHalfAscii,
            other => other,
        }),
        HirKind::Repetition(r) => Hir::repetition(Repetition { sub: Box::new(ascii_word_boundaries(&r.sub)), ..r.clone() }),
        HirKind::Capture(c) => Hir::capture(Capture { sub: Box::new(ascii_word_boundaries(&c.sub)), ..c.clone() }),
        HirKind::Concat(subs) => Hir::concat(subs.iter().map(ascii_word_boundaries).collect()),
        HirKind::Alternation(subs) => Hir::alternation(subs.iter().map(ascii_word_boundaries).collect()),
        HirKind::Empty | HirKind::Literal(_) | HirKind::Class(_) => hir.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PatternUse::*;

    #[test]
    fn compiles_as_the_filter_matches() {
        let cases: &[(&str, PatternUse, &str, Option<&str>)] = &[
            (r"password\s*=", SensitiveWord, "my PASSWORD = x", Some("PASSWORD =")),
            (r"ärger\d+", SensitiveWord, "kein ÄRGER42!", Some("ÄRGER42")),
            (r"password", RequestFilter, "PASSWORD", None),
            (r"(?i)password", RequestFilter, "PassWord", Some("PassWord")),
            // ASCII word boundaries: `é` is no word character for them.
            (r"\bcafe\b", RequestFilter, "écafeé", Some("cafe")),
            (r"\b\d{3}\b", RequestFilter, "a 123 b", Some("123")),
            (r"\Bx", RequestFilter, "ax", Some("x")),
            (r"(?P<user>\w+)@example\.com", RequestFilter, "bob@example.com", Some("bob@example.com")),
            (r"^claude-.*$", ModelRedirect, "claude-opus", Some("claude-opus")),
        ];
        for (pattern, kind, text, want) in cases {
            let regex = compile(pattern, *kind).unwrap();
            assert_eq!(regex.find(text).map(|m| m.as_str()), *want, "{pattern} on {text}");
        }
        let named = compile(r"(?P<user>\w+)@(x)", RequestFilter).unwrap();
        assert_eq!(named.captures_len(), 3);
        assert_eq!(named.capture_names().flatten().collect::<Vec<_>>(), ["user"]);
    }

    #[test]
    fn refuses_what_the_filter_cannot_use() {
        let cases: &[(&str, PatternUse, &str)] = &[
            ("(unclosed", RequestFilter, "invalid regex"),
            (r"\w{1000}{1000}", SensitiveWord, "too complex"),
            (r"\w{500}{500}", ModelRedirect, "too complex"),
            ("a*|b", SensitiveWord, "matches empty text"),
            (r"\B", SensitiveWord, "matches empty text"),
            (&"(".repeat(70), RequestFilter, "invalid regex"),
        ];
        for (pattern, kind, want) in cases {
            let err = compile(pattern, *kind).unwrap_err();
            assert!(err.contains(want), "{pattern}: {err}");
        }
        assert!(compile("a*|b", RequestFilter).is_ok());
        let set = compile_set(&[r"\d{3}", "x"], SensitiveWord).unwrap();
        assert_eq!(set.matches("X 12").iter().collect::<Vec<_>>(), [1]);
    }
}
