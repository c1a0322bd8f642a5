//! Model redirects of a provider (SPEC §6), compiled once per snapshot: the
//! first rule whose pattern matches the requested model names the model
//! sent upstream. Literal rules (exact, prefix, suffix, contains) ignore
//! ASCII case, as the allowed-model lists do; a regex is as written.

use hubgate_wire::pattern::{self, PatternUse};
use hubgate_wire::{ModelRedirect, RedirectMatch};
use regex::Regex;

#[derive(Debug, Clone)]
enum Matcher {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Contains(String),
    Regex(Regex),
}

#[derive(Debug, Clone)]
struct Rule {
    matcher: Matcher,
    target: String,
}

#[derive(Debug, Clone, Default)]
pub struct Redirects(Vec<Rule>);

impl Redirects {
    /// The rules that compile, and a warning for each that does not.
    pub fn compile(rules: &[ModelRedirect]) -> (Redirects, Vec<String>) {
        let mut out = Vec::with_capacity(rules.len());
        let mut warnings = Vec::new();
        for r in rules {
            let lower = r.pattern.to_ascii_lowercase();
            let matcher = match r.match_type {
                RedirectMatch::Exact => Matcher::Exact(lower),
                RedirectMatch::Prefix => Matcher::Prefix(lower),
                RedirectMatch::Suffix => Matcher::Suffix(lower),
                RedirectMatch::Contains => Matcher::Contains(lower),
                RedirectMatch::Regex => match pattern::compile(&r.pattern, PatternUse::ModelRedirect) {
                    Ok(regex) => Matcher::Regex(regex),
                    Err(e) => {
                        warnings.push(format!("model redirect `{}` skipped: {e}", r.pattern));
                        continue;
                    }
                },
            };
            out.push(Rule { matcher, target: r.target.clone() });
        }
        (Redirects(out), warnings)
    }

    /// The model to send upstream instead of `model`, if a rule says so.
    pub fn apply(&self, model: &str) -> Option<&str> {
        let lower = model.to_ascii_lowercase();
        let rule = self.0.iter().find(|r| match &r.matcher {
            Matcher::Exact(p) => lower == *p,
            Matcher::Prefix(p) => lower.starts_with(p.as_str()),
            Matcher::Suffix(p) => lower.ends_with(p.as_str()),
            Matcher::Contains(p) => lower.contains(p.as_str()),
            Matcher::Regex(re) => re.is_match(model),
        })?;
        (rule.target != model).then_some(rule.target.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(match_type: RedirectMatch, pattern: &str, target: &str) -> ModelRedirect {
        ModelRedirect { match_type, pattern: pattern.into(), target: target.into() }
    }

    #[test]
    fn the_first_matching_rule_of_every_kind_wins() {
        let (r, warnings) = Redirects::compile(&[
            rule(RedirectMatch::Exact, "Claude-Opus-4", "claude-opus-4-1"),
            rule(RedirectMatch::Prefix, "claude-3-5-sonnet", "claude-sonnet-4-5"),
            rule(RedirectMatch::Suffix, "-mini", "gpt-4o-mini-2024-07-18"),
            rule(RedirectMatch::Contains, "haiku", "claude-haiku-4-5"),
            rule(RedirectMatch::Regex, r"^gemini-1\.5-(pro|flash)$", "gemini-2.5-pro"),
            rule(RedirectMatch::Regex, "(", "never"),
            rule(RedirectMatch::Contains, "sonnet", "claude-sonnet-4-5"),
        ]);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(r.apply("claude-opus-4"), Some("claude-opus-4-1"));
        assert_eq!(r.apply("claude-opus-4-20250514"), None, "exact is exact");
        assert_eq!(r.apply("claude-3-5-sonnet-20241022"), Some("claude-sonnet-4-5"));
        assert_eq!(r.apply("gpt-4o-mini"), Some("gpt-4o-mini-2024-07-18"));
        assert_eq!(r.apply("claude-3-haiku-20240307"), Some("claude-haiku-4-5"));
        assert_eq!(r.apply("gemini-1.5-flash"), Some("gemini-2.5-pro"));
        assert_eq!(r.apply("gemini-1.5-flash-8b"), None);
        // Already the target: nothing to rewrite.
        assert_eq!(r.apply("claude-sonnet-4-5"), None);
        assert_eq!(Redirects::default().apply("x"), None);
    }
}
