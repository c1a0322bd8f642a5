//! Request filters (SPEC §2.8): guard 8 runs the global ones, provider
//! selection (10) the ones bound to the chosen provider. The snapshot's
//! filters are compiled once; a request only applies them.
//!
//! Semantics follow Claude Code Hub's `RequestFilterEngine`
//! (`src/lib/request-filter-engine.ts`):
//! - Order: ascending `priority` (a lower number runs first), ties by id.
//!   Each filter sees the request as the earlier ones left it.
//! - Header `remove` / `set`: the header named `target`, any case. A
//!   non-string replacement is set as its JSON text.
//! - Body `json_path`: sets the value at path `target` to `replacement`.
//!   Paths are dotted keys with array indices, `messages.0.content` or
//!   `messages[0].content`. Missing objects are created on the way (an array
//!   for a `[0]` step), and a scalar or null in the way is overwritten.
//! - Body `text_replace`: in every string value of the body, keys and
//!   numbers untouched. `contains` replaces every occurrence, `exact` a
//!   string equal to the target, `regex` every match, with JavaScript's
//!   replacement patterns (`$1`, `$<name>`, `$&`, `` $` ``, `$'`, `$$`).
//!
//! Beyond CCH (which logs these as unsupported and does nothing):
//! - Body `set` is the same as `json_path`; body `remove` deletes the path
//!   (an array element is cut out, the later ones move up).
//! - Header `text_replace` replaces in the value of every header (the
//!   control plane stores a pattern, not a header name, in `target`).
//! - A path may start with `$.` for the root, as the design doc writes it.
//! - Setting an array index past the end fails instead of padding with
//!   nulls; a key that appears twice in an object on the path fails.
//! - No filter touches pseudo-headers, `content-length`,
//!   `transfer-encoding`, `connection` or `host`: the gateway owns them.
//!
//! Bodies are edited in place: only the changed values are rewritten and
//! every other byte is kept (key order, numbers, escapes, whitespace), so a
//! filter that matches in some turns of a conversation does not change the
//! rest of the prompt that providers cache.

use std::borrow::Cow;

use hubgate_wire::{FilterAction, FilterBinding, FilterScope, RequestFilter, TextMatch};
use aho_corasick::{AhoCorasick, MatchKind};
use hubgate_wire::pattern::{self, PatternUse};
use memchr::memmem::{self, Finder};
use memchr::{memchr, memchr2};
use regex::{Captures, Regex};
use serde_json::Value;

use crate::chain::{self, Cx, Guard};
use crate::headers::Headers;
use crate::regex_literals::{self, Fold};
use crate::snapshot::CompiledSnapshot;

const PROTECTED_HEADERS: &[&str] = &["content-length", "transfer-encoding", "connection", "host"];
/// The group of a provider without group tags (SPEC §6).
const DEFAULT_GROUP: &str = "default";
const MALFORMED: &str = "malformed JSON";

#[derive(Debug, Clone, Default)]
pub struct RequestFilters {
    /// In the order they run.
    filters: Vec<Filter>,
    /// The needles of every body `text_replace` rule (`TextRule::needles`
    /// are ids here), ASCII case ignored: one search per body finds them.
    needles: Option<AhoCorasick>,
    needle_count: usize,
    /// Every rule's `Prefilter::unseen`.
    unseen: Vec<char>,
}

/// Which needles a body holds. Made for one body: a new body needs a new
/// scan.
#[derive(Debug, Clone)]
pub struct BodyScan {
    len: usize,
    found: Vec<bool>,
    /// The body spells a string with other than the short escapes (`\n`…),
    /// so a needle may be hidden in it.
    other_escapes: bool,
    /// The body has a character of `RequestFilters::unseen`.
    unseen: bool,
}

/// Which filters to run: the global ones (before provider selection), or
/// those bound to the chosen provider: by id (`providers`) or by a group
/// tag in common (`groups`; a provider without tags is in `default`).
#[derive(Debug, Clone, Copy)]
pub enum Binding<'a> {
    Global,
    Provider { id: i64, group_tags: &'a [String] },
}

/// What the filters changed. Header names are lowercase. `body` is `Some`
/// only when a body filter changed the body: the caller replaces it and
/// fixes `content-length`. `failures` names the filters that failed and
/// were skipped; the request goes on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Edits {
    pub set_headers: Vec<(String, String)>,
    pub remove_headers: Vec<String>,
    pub body: Option<Vec<u8>>,
    pub failures: Vec<String>,
}

impl Edits {
    /// Nothing to change in the request (failures aside).
    pub fn is_empty(&self) -> bool {
        self.set_headers.is_empty() && self.remove_headers.is_empty() && self.body.is_none()
    }
}

#[derive(Debug, Clone)]
struct Filter {
    id: i64,
    name: String,
    priority: i32,
    binding: FilterBinding,
    provider_ids: Vec<i64>,
    group_tags: Vec<String>,
    op: Op,
}

#[derive(Debug, Clone)]
enum Op {
    Header(HeaderOp),
    Body(BodyOp),
}

#[derive(Debug, Clone)]
enum HeaderOp {
    Remove(String),
    Set(String, String),
    Replace(Box<TextRule>),
}

#[derive(Debug, Clone)]
enum BodyOp {
    Remove(Vec<Step>),
    /// `json` is `value` serialized.
    Set { path: Vec<Step>, value: Value, json: Vec<u8> },
    Replace(Box<TextRule>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    /// A `[n]` step: on a missing value it creates an array.
    Index(usize),
}

#[derive(Debug, Clone)]
struct TextRule {
    matcher: Matcher,
    replacement: String,
    /// JSON-escaped texts of which every match holds one (for `exact`, the
    /// whole text), to pass over body strings without decoding them.
    /// `None`: no such text is known.
    prefilter: Option<Prefilter>,
}

#[derive(Debug, Clone)]
struct Prefilter {
    /// Ids in `RequestFilters::needles` (set at compile).
    ids: Vec<usize>,
    needles: Vec<String>,
    /// Finds the needles in one string.
    search: StringSearch,
    /// A string with one of these may match without holding a needle.
    unseen: Vec<char>,
}

#[derive(Debug, Clone)]
enum StringSearch {
    /// The one needle, case as it is.
    Exact(Box<Finder<'static>>),
    /// The needles, ASCII case ignored.
    Any(AhoCorasick),
}

#[derive(Debug, Clone)]
enum Matcher {
    Contains(String),
    Exact(String),
    Regex(Regex, Vec<Piece>),
}

/// A part of a regex replacement.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    /// Group 0 is the whole match.
    Group(usize),
    Named(String),
    BeforeMatch,
    AfterMatch,
}

impl RequestFilters {
    /// Compiles a snapshot's (enabled) filters. Filters that cannot be used
    /// are left out, each with a warning naming its id.
    pub fn compile(filters: &[RequestFilter]) -> (RequestFilters, Vec<String>) {
        let mut compiled = Vec::with_capacity(filters.len());
        let mut warnings = Vec::new();
        for f in filters {
            match compile_op(f) {
                Ok(op) => compiled.push(Filter {
                    id: f.id,
                    name: f.name.clone(),
                    priority: f.priority,
                    binding: f.binding,
                    provider_ids: f.provider_ids.clone(),
                    group_tags: f.group_tags.clone(),
                    op,
                }),
                Err(reason) => warnings.push(format!("request filter {} skipped: {reason}", f.id)),
            }
        }
        compiled.sort_by_key(|f| (f.priority, f.id));
        let mut needles = Vec::new();
        let mut unseen = Vec::new();
        for f in &mut compiled {
            if let Op::Body(BodyOp::Replace(rule)) = &mut f.op {
                if let Some(prefilter) = &mut rule.prefilter {
                    unseen.extend(prefilter.unseen.iter().copied());
                    let first = needles.len();
                    needles.extend(prefilter.needles.iter().cloned());
                    prefilter.ids = (first..needles.len()).collect();
                }
            }
        }
        let automaton = match needles.is_empty() {
            true => None,
            false => AhoCorasick::builder().ascii_case_insensitive(true).build(&needles).ok(),
        };
        if automaton.is_none() {
            // No search: every rule looks at every string.
            for f in &mut compiled {
                if let Op::Body(BodyOp::Replace(rule)) = &mut f.op {
                    rule.prefilter = None;
                }
            }
        }
        unseen.sort_unstable();
        unseen.dedup();
        (RequestFilters { filters: compiled, needles: automaton, needle_count: needles.len(), unseen }, warnings)
    }

    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    /// Whether any filter of `which` edits the body (else the body need not
    /// be passed, nor waited for).
    pub fn needs_body(&self, which: Binding<'_>) -> bool {
        self.selected(which).any(|f| matches!(f.op, Op::Body(_)))
    }

    /// Runs the filters of `which` in order over the request as the client
    /// sent it. An absent or empty body is left alone.
    pub fn apply(&self, which: Binding<'_>, headers: &Headers, body: Option<&[u8]>) -> Edits {
        self.apply_scanned(which, headers, body, &mut None)
    }

    /// `apply`, with the needle search of `body` kept in `scan` (made here
    /// if `None`) for the next pass over the same body.
    pub fn apply_scanned(
        &self,
        which: Binding<'_>,
        headers: &Headers,
        body: Option<&[u8]>,
        scan: &mut Option<BodyScan>,
    ) -> Edits {
        let sent_body = body.filter(|b| !b.is_empty());
        let mut view = HeaderView { sent: headers, changes: Vec::new() };
        let mut body_check: Option<Result<(), String>> = None;
        let mut edited: Option<Vec<u8>> = None;
        // The scan of the edited body, once one is needed.
        let mut edited_scan: Option<BodyScan> = None;
        let mut failures = Vec::new();
        for f in self.selected(which) {
            let result = match &f.op {
                Op::Header(op) => {
                    view.apply(op);
                    Ok(())
                }
                Op::Body(op) => {
                    let Some(sent) = sent_body else { continue };
                    match body_check.get_or_insert_with(|| check_json(sent)) {
                        Err(reason) => Err(reason.clone()),
                        Ok(()) => {
                            let current = edited.as_deref().unwrap_or(sent);
                            let slot = if edited.is_some() { &mut edited_scan } else { &mut *scan };
                            let scan = matches!(op, BodyOp::Replace(_)).then(|| self.scan(current, slot));
                            match op.apply(current, scan) {
                                Ok(Some(new)) => {
                                    edited = Some(new);
                                    edited_scan = None;
                                    Ok(())
                                }
                                Ok(None) => Ok(()),
                                Err(reason) => Err(reason),
                            }
                        }
                    }
                }
            };
            if let Err(reason) = result {
                failures.push(format!("request filter {} ({}): {reason}", f.id, f.name));
            }
        }
        let mut edits = Edits {
            body: edited.filter(|new| Some(new.as_slice()) != sent_body),
            failures,
            ..Edits::default()
        };
        for (name, value) in view.changes {
            match value {
                Some(value) => edits.set_headers.push((name, value)),
                None => edits.remove_headers.push(name),
            }
        }
        edits
    }

    /// The needles in `body`: `scan` if it was made for it, else a new one.
    fn scan<'s>(&self, body: &[u8], scan: &'s mut Option<BodyScan>) -> &'s BodyScan {
        if scan.as_ref().is_some_and(|s| s.len != body.len()) {
            *scan = None;
        }
        scan.get_or_insert_with(|| {
            let mut found = vec![false; self.needle_count];
            if let Some(needles) = &self.needles {
                for m in needles.find_overlapping_iter(body) {
                    if let Some(found) = found.get_mut(m.pattern().as_usize()) {
                        *found = true;
                    }
                }
            }
            let unseen = has_unseen(body, &self.unseen);
            BodyScan { len: body.len(), found, other_escapes: !short_escapes_only(body), unseen }
        })
    }

    /// Whether no body filter, whatever its binding, can change a string
    /// that lies in `chunk` (JSON text cut between values): each is a text
    /// replace whose needles `chunk` lacks. `false` when unsure.
    pub fn needle_free(&self, chunk: &[u8]) -> bool {
        let mut scan = None;
        let scan = self.scan(chunk, &mut scan);
        self.filters.iter().all(|f| match &f.op {
            Op::Header(_) => true,
            Op::Body(BodyOp::Replace(rule)) => !rule.may_match_somewhere(scan),
            Op::Body(_) => false,
        })
    }

    fn selected<'s>(&'s self, which: Binding<'s>) -> impl Iterator<Item = &'s Filter> + 's {
        self.filters.iter().filter(move |f| f.applies_to(which))
    }
}

impl Filter {
    fn applies_to(&self, which: Binding<'_>) -> bool {
        match (which, self.binding) {
            (Binding::Global, FilterBinding::Global) => true,
            (Binding::Provider { id, .. }, FilterBinding::Providers) => self.provider_ids.contains(&id),
            (Binding::Provider { group_tags, .. }, FilterBinding::Groups) => {
                if group_tags.is_empty() {
                    self.group_tags.iter().any(|t| t == DEFAULT_GROUP)
                } else {
                    self.group_tags.iter().any(|t| group_tags.contains(t))
                }
            }
            _ => false,
        }
    }
}

fn compile_op(f: &RequestFilter) -> Result<Op, String> {
    let replacement = || f.replacement.as_ref().ok_or_else(|| "the replacement is missing".to_string());
    Ok(match (f.scope, f.action) {
        (FilterScope::Header, FilterAction::Remove) => Op::Header(HeaderOp::Remove(header_name(&f.target)?)),
        (FilterScope::Header, FilterAction::Set) => {
            let value = text_of(replacement()?);
            if !is_header_value(&value) {
                return Err("the replacement is not a valid header value".to_string());
            }
            Op::Header(HeaderOp::Set(header_name(&f.target)?, value))
        }
        (FilterScope::Header, FilterAction::JsonPath) => {
            return Err("json_path applies to the body only".to_string());
        }
        (FilterScope::Header, FilterAction::TextReplace) => {
            let rule = text_rule(f)?;
            if !is_header_value(&rule.replacement) {
                return Err("the replacement is not a valid header value".to_string());
            }
            Op::Header(HeaderOp::Replace(Box::new(rule)))
        }
        (FilterScope::Body, FilterAction::Remove) => Op::Body(BodyOp::Remove(parse_path(&f.target)?)),
        (FilterScope::Body, FilterAction::Set | FilterAction::JsonPath) => {
            let value = replacement()?.clone();
            let json = serde_json::to_vec(&value).map_err(|e| e.to_string())?;
            Op::Body(BodyOp::Set { path: parse_path(&f.target)?, value, json })
        }
        (FilterScope::Body, FilterAction::TextReplace) => Op::Body(BodyOp::Replace(Box::new(text_rule(f)?))),
    })
}

fn text_rule(f: &RequestFilter) -> Result<TextRule, String> {
    let replacement = text_of(f.replacement.as_ref().ok_or("the replacement is missing")?);
    if f.target.is_empty() {
        return Err("the target is empty".to_string());
    }
    let (matcher, prefilter) = match f.match_type.ok_or("text_replace needs a match_type")? {
        TextMatch::Contains => (Matcher::Contains(f.target.clone()), Some(text_prefilter(&f.target))),
        TextMatch::Exact => (Matcher::Exact(f.target.clone()), Some(text_prefilter(&f.target))),
        TextMatch::Regex => {
            let regex = pattern::compile(&f.target, PatternUse::RequestFilter)?;
            let template = template(&replacement, &regex);
            let prefilter = pattern::parse(&f.target, PatternUse::RequestFilter)
                .ok()
                .and_then(|hir| regex_literals::required(&hir, Fold::Ascii))
                .and_then(literal_prefilter);
            (Matcher::Regex(regex, template), prefilter)
        }
    };
    Ok(TextRule { matcher, replacement, prefilter })
}

/// `text` as a JSON string spells it, quotes aside.
fn escaped(text: &str) -> String {
    let json = serde_json::to_string(text).unwrap_or_default();
    json.get(1..json.len().saturating_sub(1)).unwrap_or_default().to_string()
}

fn text_prefilter(text: &str) -> Prefilter {
    let needle = escaped(text);
    let search = StringSearch::Exact(Box::new(Finder::new(needle.as_bytes()).into_owned()));
    Prefilter { ids: Vec::new(), needles: vec![needle], search, unseen: Vec::new() }
}

fn literal_prefilter(required: regex_literals::Required) -> Option<Prefilter> {
    let needles: Vec<String> = required.literals.iter().map(|l| escaped(l)).collect();
    let search = AhoCorasick::builder()
        .match_kind(MatchKind::LeftmostFirst)
        .ascii_case_insensitive(true)
        .build(&needles)
        .ok()?;
    Some(Prefilter { ids: Vec::new(), needles, search: StringSearch::Any(search), unseen: required.unseen })
}

fn has_unseen(bytes: &[u8], unseen: &[char]) -> bool {
    unseen.iter().any(|c| memmem::find(bytes, c.encode_utf8(&mut [0; 4]).as_bytes()).is_some())
}

/// A string replacement as is, any other JSON value as its JSON text.
fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn header_name(target: &str) -> Result<String, String> {
    let name = target.to_ascii_lowercase();
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(token) {
        return Err(format!("`{target}` is not a header name"));
    }
    if PROTECTED_HEADERS.contains(&name.as_str()) {
        return Err(format!("the `{name}` header is managed by the gateway"));
    }
    Ok(name)
}

fn is_header_value(value: &str) -> bool {
    !value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f)
}

/// `a.b[0].c`, `a.0.c`, `$.a.b`. A step is a key, or `[n]`, or a dotted
/// number (a key of an object, an index into an array).
fn parse_path(path: &str) -> Result<Vec<Step>, String> {
    let bad = |why: &str| Err(format!("invalid JSON path `{path}`: {why}"));
    if path == "$" {
        return bad("it names the whole body");
    }
    let mut rest = match path.strip_prefix("$.") {
        Some(rest) => rest,
        None if path.starts_with("$[") => path.get(1..).unwrap_or_default(),
        None => path,
    };
    let mut steps = Vec::new();
    loop {
        if let Some(after) = rest.strip_prefix('[') {
            let Some(end) = after.find(']') else { return bad("unclosed `[`") };
            let digits = after.get(..end).unwrap_or_default();
            let Some(index) = digits.parse().ok().filter(|_| digits.bytes().all(|b| b.is_ascii_digit())) else {
                return bad("`[…]` must hold an array index");
            };
            steps.push(Step::Index(index));
            rest = after.get(end + 1..).unwrap_or_default();
        } else {
            let end = rest.find(['.', '[', ']']).unwrap_or(rest.len());
            let key = rest.get(..end).unwrap_or_default();
            if key.is_empty() {
                return bad("empty step");
            }
            steps.push(Step::Key(key.to_string()));
            rest = rest.get(end..).unwrap_or_default();
        }
        if rest.is_empty() {
            return Ok(steps);
        }
        if let Some(after) = rest.strip_prefix('.') {
            rest = after;
        } else if !rest.starts_with('[') {
            return bad("unexpected `]`");
        }
    }
}

impl Step {
    fn key(&self) -> Cow<'_, str> {
        match self {
            Step::Key(key) => Cow::Borrowed(key),
            Step::Index(i) => Cow::Owned(i.to_string()),
        }
    }

    /// As JavaScript reads an array index: `0`, `12`, not `01` or `+1`.
    fn index(&self) -> Option<usize> {
        match self {
            Step::Index(i) => Some(*i),
            Step::Key(key) => key.parse().ok().filter(|i: &usize| i.to_string() == *key),
        }
    }
}

impl TextRule {
    /// Whether the text of a JSON string may hold a match; `raw` is the
    /// string as written, quotes excluded. `false` is certain: escaping a
    /// text character by character, with only the short escapes (`\"`,
    /// `\n`…), gives one spelling, so a match spells a needle.
    fn may_match(&self, raw: &[u8]) -> bool {
        let Some(prefilter) = &self.prefilter else { return true };
        if !short_escapes_only(raw) || has_unseen(raw, &prefilter.unseen) {
            return true;
        }
        match (&self.matcher, &prefilter.search) {
            (Matcher::Exact(_), StringSearch::Exact(needle)) => raw == needle.needle(),
            (_, StringSearch::Exact(needle)) => needle.find(raw).is_some(),
            (_, StringSearch::Any(needles)) => needles.is_match(raw),
        }
    }

    /// Whether some string of the body `scan` was made of may hold a match.
    fn may_match_somewhere(&self, scan: &BodyScan) -> bool {
        let Some(prefilter) = &self.prefilter else { return true };
        scan.other_escapes
            || (scan.unseen && !prefilter.unseen.is_empty())
            || prefilter.ids.iter().any(|&id| scan.found.get(id) == Some(&true))
    }

    /// The new text, if it differs.
    fn apply(&self, text: &str) -> Option<String> {
        let new = match &self.matcher {
            Matcher::Contains(target) => {
                text.contains(target.as_str()).then(|| text.replace(target.as_str(), &self.replacement))
            }
            Matcher::Exact(target) => (text == target).then(|| self.replacement.clone()),
            Matcher::Regex(regex, template) => replace_matches(regex, template, text),
        };
        new.filter(|new| new != text)
    }
}

fn short_escapes_only(raw: &[u8]) -> bool {
    let mut i = 0;
    while let Some(at) = raw.get(i..).and_then(|rest| memchr(b'\\', rest)) {
        if !matches!(raw.get(i + at + 1), Some(b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't')) {
            return false;
        }
        i += at + 2;
    }
    true
}

fn replace_matches(regex: &Regex, template: &[Piece], text: &str) -> Option<String> {
    if !regex.is_match(text) {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for caps in regex.captures_iter(text) {
        let Some(whole) = caps.get(0) else { continue };
        out.push_str(text.get(last..whole.start())?);
        expand(template, &caps, text, &mut out);
        last = whole.end();
    }
    out.push_str(text.get(last..)?);
    Some(out)
}

fn expand(template: &[Piece], caps: &Captures<'_>, text: &str, out: &mut String) {
    fn group<'h>(m: Option<regex::Match<'h>>) -> &'h str {
        m.map_or("", |m| m.as_str())
    }
    let (start, end) = caps.get(0).map_or((0, 0), |m| (m.start(), m.end()));
    for piece in template {
        out.push_str(match piece {
            Piece::Text(s) => s,
            Piece::Group(n) => group(caps.get(*n)),
            Piece::Named(name) => group(caps.name(name)),
            Piece::BeforeMatch => text.get(..start).unwrap_or_default(),
            Piece::AfterMatch => text.get(end..).unwrap_or_default(),
        });
    }
}

/// A replacement read as JavaScript's `String.prototype.replace` reads it
/// (CCH runs there): `$1`…`$99` and `$<name>` when the regex has such a
/// group, `$&`, `` $` ``, `$'`, `$$`; any other `$` is plain text.
fn template(replacement: &str, regex: &Regex) -> Vec<Piece> {
    let groups = regex.captures_len().saturating_sub(1);
    let named = regex.capture_names().any(|name| name.is_some());
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut rest = replacement;
    while let Some(at) = rest.find('$') {
        text.push_str(rest.get(..at).unwrap_or_default());
        let after = rest.get(at + 1..).unwrap_or_default();
        let (piece, used) = dollar(after, groups, named);
        match piece {
            Piece::Text(t) => text.push_str(&t),
            piece => {
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(piece);
            }
        }
        rest = after.get(used..).unwrap_or_default();
    }
    text.push_str(rest);
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    pieces
}

/// What follows a `$`, and how many bytes of it that takes.
fn dollar(after: &str, groups: usize, named: bool) -> (Piece, usize) {
    let bytes = after.as_bytes();
    let digit = |i: usize| bytes.get(i).filter(|b| b.is_ascii_digit()).map(|b| usize::from(b - b'0'));
    let is_group = |n: usize| (1..=groups).contains(&n);
    match bytes.first() {
        Some(b'$') => (Piece::Text("$".to_string()), 1),
        Some(b'&') => (Piece::Group(0), 1),
        Some(b'`') => (Piece::BeforeMatch, 1),
        Some(b'\'') => (Piece::AfterMatch, 1),
        Some(b'<') if named => match after.find('>') {
            Some(end) => (Piece::Named(after.get(1..end).unwrap_or_default().to_string()), end + 1),
            None => (Piece::Text("$".to_string()), 0),
        },
        _ => match (digit(0), digit(1)) {
            (Some(a), Some(b)) if is_group(a * 10 + b) => (Piece::Group(a * 10 + b), 2),
            (Some(a), _) if is_group(a) => (Piece::Group(a), 1),
            _ => (Piece::Text("$".to_string()), 0),
        },
    }
}

/// The headers as the filters so far left them.
struct HeaderView<'a> {
    sent: &'a Headers,
    /// Lowercase name → value now, `None` once removed; first change first.
    changes: Vec<(String, Option<String>)>,
}

impl HeaderView<'_> {
    fn apply(&mut self, op: &HeaderOp) {
        match op {
            HeaderOp::Remove(name) => self.change(name, None),
            HeaderOp::Set(name, value) => self.change(name, Some(value.clone())),
            HeaderOp::Replace(rule) => {
                for name in self.names() {
                    if name.starts_with(':') || PROTECTED_HEADERS.contains(&name.as_str()) {
                        continue;
                    }
                    if let Some(new) = self.get(&name).and_then(|value| rule.apply(&value)) {
                        self.change(&name, Some(new));
                    }
                }
            }
        }
    }

    /// A repeated header's values are read joined by ", ", as fetch's
    /// `Headers.get` (which CCH uses) reads them.
    fn get<'s>(&'s self, name: &'s str) -> Option<Cow<'s, str>> {
        if let Some((_, value)) = self.changes.iter().find(|(n, _)| n == name) {
            return value.as_deref().map(Cow::Borrowed);
        }
        let mut values = self.sent.all(name);
        let first = values.next()?;
        let rest: Vec<&str> = values.collect();
        if rest.is_empty() {
            return Some(Cow::Borrowed(first));
        }
        Some(Cow::Owned(std::iter::once(first).chain(rest).collect::<Vec<_>>().join(", ")))
    }

    fn change(&mut self, name: &str, value: Option<String>) {
        match self.changes.iter_mut().find(|(n, _)| n == name) {
            Some(entry) => entry.1 = value,
            None => self.changes.push((name.to_string(), value)),
        }
    }

    /// Lowercase names of the headers present now.
    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        let sent = self.sent.iter().map(|(name, _)| name.to_ascii_lowercase());
        let set = self.changes.iter().filter(|(_, v)| v.is_some()).map(|(name, _)| name.clone());
        for name in sent.chain(set) {
            if !names.contains(&name) && self.get(&name).is_some() {
                names.push(name);
            }
        }
        names
    }
}

fn check_json(body: &[u8]) -> Result<(), String> {
    serde_json::from_slice::<serde::de::IgnoredAny>(body)
        .map(|_| ())
        .map_err(|e| format!("the body is not JSON: {e}"))
}

impl BodyOp {
    /// The new body, if this changes it. `body` is valid JSON; `scan`, its
    /// needle search (for `Replace`).
    fn apply(&self, body: &[u8], scan: Option<&BodyScan>) -> Result<Option<Vec<u8>>, String> {
        match self {
            BodyOp::Remove(path) => remove_path(body, path),
            BodyOp::Set { path, value, json } => set_path(body, path, value, json),
            BodyOp::Replace(rule) => replace_in_strings(body, rule, scan),
        }
    }
}

/// Applies `rule` to every string value (not key) of the JSON text `s`.
fn replace_in_strings(s: &[u8], rule: &TextRule, scan: Option<&BodyScan>) -> Result<Option<Vec<u8>>, String> {
    if scan.is_some_and(|scan| !rule.may_match_somewhere(scan)) {
        return Ok(None);
    }
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    let mut i = 0;
    // Outside strings JSON has no quotes, so the next quote opens a string.
    while let Some(start) = s.get(i..).and_then(|rest| memchr(b'"', rest)).map(|at| i + at) {
        let end = string_end(s, start).ok_or(MALFORMED)?;
        i = end;
        if s.get(skip_ws(s, end)) == Some(&b':') || !rule.may_match(s.get(start + 1..end - 1).unwrap_or_default()) {
            continue;
        }
        let text = s.get(start..end).and_then(decode).ok_or(MALFORMED)?;
        if let Some(new) = rule.apply(&text) {
            let out = out.get_or_insert_with(|| Vec::with_capacity(s.len() + 256));
            out.extend_from_slice(s.get(copied..start).unwrap_or_default());
            serde_json::to_writer(&mut *out, &new).map_err(|e| e.to_string())?;
            copied = end;
        }
    }
    Ok(out.map(|mut out| {
        out.extend_from_slice(s.get(copied..).unwrap_or_default());
        out
    }))
}

/// `body` with its top-level `key` set to the string `value`, spliced in
/// place (the rest is not re-encoded); `None` when it already is.
pub(crate) fn set_top_level_string(body: &[u8], key: &str, value: &str) -> Result<Option<Vec<u8>>, String> {
    let value = Value::String(value.to_string());
    let json = serde_json::to_vec(&value).map_err(|e| e.to_string())?;
    set_path(body, &[Step::Key(key.to_string())], &value, &json)
}

fn set_path(s: &[u8], path: &[Step], value: &Value, json: &[u8]) -> Result<Option<Vec<u8>>, String> {
    match locate(s, path)? {
        Place::Found { parent, index } => {
            let entry = parent.entries.get(index).ok_or(MALFORMED)?;
            let old = s.get(entry.value..entry.end).ok_or(MALFORMED)?;
            if serde_json::from_slice::<Value>(old).is_ok_and(|old| old == *value) {
                return Ok(None);
            }
            Ok(Some(splice(s, entry.value, entry.end, json)))
        }
        Place::Missing { depth, parent } => {
            let step = path.get(depth).ok_or(MALFORMED)?;
            let mut insert = Vec::new();
            if !parent.entries.is_empty() {
                insert.push(b',');
            }
            if parent.object {
                serde_json::to_writer(&mut insert, &step.key()).map_err(|e| e.to_string())?;
                insert.push(b':');
            } else if step.index() != Some(parent.entries.len()) {
                return Err(format!("index {} is past the end of an array of {}", step.key(), parent.entries.len()));
            }
            nest(path.get(depth + 1..).unwrap_or_default(), json, &mut insert)?;
            let at = parent.entries.last().map_or(parent.open + 1, |e| e.end);
            Ok(Some(splice(s, at, at, &insert)))
        }
        Place::Scalar { depth, start, end } => {
            let mut nested = Vec::new();
            nest(path.get(depth..).unwrap_or_default(), json, &mut nested)?;
            Ok(Some(splice(s, start, end, &nested)))
        }
    }
}

/// Writes `json` wrapped in new objects (arrays for `[0]`) along `path`.
fn nest(path: &[Step], json: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    match path.split_first() {
        None => out.extend_from_slice(json),
        Some((Step::Key(key), rest)) => {
            out.push(b'{');
            serde_json::to_writer(&mut *out, key).map_err(|e| e.to_string())?;
            out.push(b':');
            nest(rest, json, out)?;
            out.push(b'}');
        }
        Some((Step::Index(0), rest)) => {
            out.push(b'[');
            nest(rest, json, out)?;
            out.push(b']');
        }
        Some((Step::Index(i), _)) => return Err(format!("index {i} is past the end of a new array")),
    }
    Ok(())
}

fn remove_path(s: &[u8], path: &[Step]) -> Result<Option<Vec<u8>>, String> {
    let Place::Found { parent, index } = locate(s, path)? else { return Ok(None) };
    let entries = &parent.entries;
    let this = entries.get(index).ok_or(MALFORMED)?;
    let before = index.checked_sub(1).and_then(|i| entries.get(i));
    // Take one comma with the entry.
    let (from, to) = match (before, entries.get(index + 1)) {
        (_, Some(next)) => (this.start, next.start),
        (Some(before), None) => (before.end, this.end),
        (None, None) => (this.start, this.end),
    };
    Ok(Some(splice(s, from, to, b"")))
}

/// Where a path leads in a JSON text.
enum Place {
    /// Its value is `parent.entries[index]`.
    Found { parent: Container, index: usize },
    /// `parent` has no entry for `path[depth]`.
    Missing { depth: usize, parent: Container },
    /// `path[depth - 1]` holds the scalar `start..end`: `path[depth..]`
    /// cannot be followed.
    Scalar { depth: usize, start: usize, end: usize },
}

/// The entries of one object or array.
struct Container {
    object: bool,
    /// Offset of the `{` or `[`.
    open: usize,
    entries: Vec<Entry>,
}

/// Where an entry starts (at its key, in an object), and its value's span.
struct Entry {
    start: usize,
    value: usize,
    end: usize,
}

fn locate(s: &[u8], path: &[Step]) -> Result<Place, String> {
    let mut at = skip_ws(s, 0);
    if !matches!(s.get(at), Some(b'{' | b'[')) {
        return Err("the body is not a JSON object or array".to_string());
    }
    for (depth, step) in path.iter().enumerate() {
        let parent = container(s, at).ok_or(MALFORMED)?;
        let Some(index) = find(s, &parent, step)? else { return Ok(Place::Missing { depth, parent }) };
        if depth + 1 == path.len() {
            return Ok(Place::Found { parent, index });
        }
        let entry = parent.entries.get(index).ok_or(MALFORMED)?;
        if !matches!(s.get(entry.value), Some(b'{' | b'[')) {
            return Ok(Place::Scalar { depth: depth + 1, start: entry.value, end: entry.end });
        }
        at = entry.value;
    }
    Err("the path is empty".to_string())
}

fn find(s: &[u8], parent: &Container, step: &Step) -> Result<Option<usize>, String> {
    if !parent.object {
        let index = step.index().ok_or_else(|| format!("`{}` is not an array index", step.key()))?;
        return Ok((index < parent.entries.len()).then_some(index));
    }
    let key = step.key();
    let mut hits = parent.entries.iter().enumerate().filter(|(_, e)| key_is(s, e, &key)).map(|(i, _)| i);
    let first = hits.next();
    if hits.next().is_some() {
        return Err(format!("the key `{key}` appears twice in one object"));
    }
    Ok(first)
}

fn key_is(s: &[u8], entry: &Entry, key: &str) -> bool {
    string_end(s, entry.start).and_then(|end| s.get(entry.start..end)).and_then(decode).is_some_and(|k| k == key)
}

/// The text of a JSON string literal (quotes included).
fn decode(literal: &[u8]) -> Option<Cow<'_, str>> {
    let inner = literal.get(1..literal.len().checked_sub(1)?)?;
    if !inner.contains(&b'\\') {
        return std::str::from_utf8(inner).ok().map(Cow::Borrowed);
    }
    serde_json::from_slice::<String>(literal).ok().map(Cow::Owned)
}

fn container(s: &[u8], open: usize) -> Option<Container> {
    let (object, close) = match s.get(open)? {
        b'{' => (true, b'}'),
        b'[' => (false, b']'),
        _ => return None,
    };
    let mut entries = Vec::new();
    let mut i = skip_ws(s, open + 1);
    if *s.get(i)? == close {
        return Some(Container { object, open, entries });
    }
    loop {
        let start = i;
        if object {
            i = skip_ws(s, string_end(s, i)?);
            if *s.get(i)? != b':' {
                return None;
            }
            i = skip_ws(s, i + 1);
        }
        let end = value_end(s, i)?;
        entries.push(Entry { start, value: i, end });
        i = skip_ws(s, end);
        match *s.get(i)? {
            b',' => i = skip_ws(s, i + 1),
            b if b == close => return Some(Container { object, open, entries }),
            _ => return None,
        }
    }
}

fn skip_ws(s: &[u8], mut i: usize) -> usize {
    while matches!(s.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// Offset just past the string literal whose opening quote is at `start`.
fn string_end(s: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    loop {
        i += memchr2(b'"', b'\\', s.get(i..)?)?;
        if *s.get(i)? == b'"' {
            return Some(i + 1);
        }
        i += 2;
    }
}

/// Offset just past the JSON value that starts at `start`.
fn value_end(s: &[u8], start: usize) -> Option<usize> {
    match s.get(start)? {
        b'"' => string_end(s, start),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = start;
            while let Some(&b) = s.get(i) {
                match b {
                    b'"' => {
                        i = string_end(s, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.saturating_sub(1);
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
        _ => {
            let rest = s.get(start..)?;
            let len = rest.iter().position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'));
            Some(start + len.unwrap_or(rest.len()))
        }
    }
}

fn splice(s: &[u8], from: usize, to: usize, with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + with.len());
    out.extend_from_slice(s.get(..from).unwrap_or_default());
    out.extend_from_slice(with);
    out.extend_from_slice(s.get(to..).unwrap_or_default());
    out
}

/// Guard 8: the global filters, before provider selection. Fails open: a
/// failing filter is skipped (logged, counted) and the request goes on.
pub struct GlobalFilters;

/// After provider selection: the filters bound to the chosen provider.
pub struct ProviderFilters;

impl Guard for GlobalFilters {
    fn name(&self) -> &'static str {
        "request_filters"
    }

    fn fails_open(&self) -> bool {
        true
    }

    fn check(&self, cx: &mut Cx<'_>) -> Result<chain::Step, String> {
        run(cx, |_| Some(Binding::Global))
    }
}

impl Guard for ProviderFilters {
    fn name(&self) -> &'static str {
        "provider_filters"
    }

    fn fails_open(&self) -> bool {
        true
    }

    fn check(&self, cx: &mut Cx<'_>) -> Result<chain::Step, String> {
        // With failover each attempt applies its own provider's filters.
        if cx.ex.failover.is_some() {
            return Ok(chain::Step::Next);
        }
        let chosen = cx.ex.plan.as_ref().map(|p| p.provider_id);
        run(cx, |snapshot| {
            let provider = snapshot.providers.iter().find(|p| Some(p.provider.id) == chosen)?;
            Some(Binding::Provider { id: provider.provider.id, group_tags: &provider.provider.group_tags })
        })
    }
}

/// Applies the selected filters to the exchange: its headers and body
/// change for the guards after this one, and the glue sends the changes
/// upstream.
fn run(cx: &mut Cx<'_>, which: impl for<'s> Fn(&'s CompiledSnapshot) -> Option<Binding<'s>>) -> Result<chain::Step, String> {
    let Some(snapshot) = cx.ex.snapshot.clone() else {
        return Err("no policy".to_string());
    };
    let Some(binding) = which(&snapshot) else {
        return Ok(chain::Step::Next);
    };
    let filters = &snapshot.request_filters;
    if filters.is_empty() {
        return Ok(chain::Step::Next);
    }
    let ex = &mut *cx.ex;
    // No needle outside the parts seen needle-free (segments.rs): no body
    // filter changes the (valid JSON) body, so it is not passed.
    let unchanged = !ex.body_changed
        && match (ex.parts.as_mut(), ex.body.as_deref()) {
            (Some(parts), Some(body)) if parts.version == snapshot.version => {
                parts.needle_free(body, |chunk| filters.needle_free(chunk))
            }
            _ => false,
        };
    let edits = match unchanged {
        true => filters.apply(binding, &ex.headers, None),
        false => filters.apply_scanned(binding, &ex.headers, ex.body.as_deref(), &mut ex.filter_scan),
    };
    for failure in &edits.failures {
        log::warn!("{failure}");
        cx.host.count("hubgate_request_filter_failures_total");
    }
    for name in edits.remove_headers {
        ex.headers.remove(&name);
        ex.header_edits.push((name, None));
    }
    for (name, value) in edits.set_headers {
        ex.headers.set(&name, &value);
        ex.header_edits.push((name, Some(value)));
    }
    if let Some(body) = edits.body {
        ex.body = Some(body);
        ex.body_changed = true;
        ex.filter_scan = None;
    }
    Ok(chain::Step::Next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body_text::samples;
    use serde_json::json;
    use FilterAction::{JsonPath, Remove, Set, TextReplace};
    use FilterScope::{Body, Header};
    use TextMatch::{Contains, Exact, Regex as Re};

    fn rule(id: i64, scope: FilterScope, action: FilterAction, target: &str, replacement: Option<Value>) -> RequestFilter {
        RequestFilter {
            id,
            name: format!("f{id}"),
            scope,
            action,
            match_type: None,
            target: target.to_string(),
            replacement,
            priority: 0,
            binding: FilterBinding::Global,
            provider_ids: vec![],
            group_tags: vec![],
        }
    }

    fn replace(id: i64, scope: FilterScope, m: TextMatch, target: &str, with: &str) -> RequestFilter {
        RequestFilter { match_type: Some(m), ..rule(id, scope, TextReplace, target, Some(json!(with))) }
    }

    fn compile(filters: &[RequestFilter]) -> RequestFilters {
        let (compiled, warnings) = RequestFilters::compile(filters);
        assert!(warnings.is_empty(), "{warnings:?}");
        compiled
    }

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        Headers::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    /// The body the global filters make of `body`, checked to be JSON.
    fn body_after(filters: &[RequestFilter], body: &str) -> (Option<String>, Vec<String>) {
        let edits = compile(filters).apply(Binding::Global, &Headers::default(), Some(body.as_bytes()));
        let new = edits.body.map(|b| String::from_utf8(b).unwrap());
        if let Some(new) = &new {
            serde_json::from_str::<Value>(new).unwrap_or_else(|e| panic!("invalid JSON {new}: {e}"));
        }
        (new, edits.failures)
    }

    #[test]
    fn body_paths() {
        let set = |path: &str, value: Value| rule(1, Body, JsonPath, path, Some(value));
        let remove = |path: &str| rule(1, Body, Remove, path, None);
        let cases: Vec<(RequestFilter, &str, Option<&str>)> = vec![
            (set("model", json!("b")), r#"{"model":"a","x":1}"#, Some(r#"{"model":"b","x":1}"#)),
            (set("$.model", json!("b")), r#"{"model":"a"}"#, Some(r#"{"model":"b"}"#)),
            (set("$.metadata.user_id", json!("u2")), r#"{"metadata":{"user_id":"u1"}}"#, Some(r#"{"metadata":{"user_id":"u2"}}"#)),
            // `set` on the body is `json_path`.
            (rule(1, Body, Set, "temperature", Some(json!(0.7))), r#"{"temperature":1}"#, Some(r#"{"temperature":0.7}"#)),
            (set("thinking", json!({"type": "disabled"})), r#"{"thinking":{"type":"enabled","budget_tokens":9}}"#, Some(r#"{"thinking":{"type":"disabled"}}"#)),
            (set("stream", Value::Null), r#"{"stream":true}"#, Some(r#"{"stream":null}"#)),
            // Missing keys are added, missing objects created on the way.
            (set("b", json!(2)), r#"{"a":1}"#, Some(r#"{"a":1,"b":2}"#)),
            (set("a", json!(true)), "{ }", Some(r#"{"a":true }"#)),
            (set("x.y.z", json!(1)), r#"{"a":1}"#, Some(r#"{"a":1,"x":{"y":{"z":1}}}"#)),
            (set("list[0].name", json!("n")), "{}", Some(r#"{"list":[{"name":"n"}]}"#)),
            (set("m.0", json!(1)), "{}", Some(r#"{"m":{"0":1}}"#)),
            (set("say\"hi", json!(1)), "{}", Some(r#"{"say\"hi":1}"#)),
            // Array indices, dotted or bracketed; one past the end appends.
            (set("messages.0.content", json!("x")), r#"{"messages":[{"content":"a"},{"content":"b"}]}"#, Some(r#"{"messages":[{"content":"x"},{"content":"b"}]}"#)),
            (set("messages[1].content", json!("x")), r#"{"messages":[{"content":"a"},{"content":"b"}]}"#, Some(r#"{"messages":[{"content":"a"},{"content":"x"}]}"#)),
            (set("messages[2]", json!({"role": "user"})), r#"{"messages":[1,2]}"#, Some(r#"{"messages":[1,2,{"role":"user"}]}"#)),
            (set("a[0]", json!(1)), r#"{"a":[]}"#, Some(r#"{"a":[1]}"#)),
            (set("[1]", json!(9)), "[1,2]", Some("[1,9]")),
            // A scalar or null in the way is overwritten.
            (set("metadata.user_id", json!("u")), r#"{"metadata":"x"}"#, Some(r#"{"metadata":{"user_id":"u"}}"#)),
            (set("metadata.user_id", json!("u")), r#"{"metadata":null,"z":0}"#, Some(r#"{"metadata":{"user_id":"u"},"z":0}"#)),
            // The same value: nothing to write.
            (set("model", json!("a")), r#"{"model":"a"}"#, None),
            (set("t", json!(1)), r#"{"t":1.0}"#, Some(r#"{"t":1}"#)),
            (set("o", json!({"a": 1, "b": 2})), r#"{"o":{ "b":2, "a":1 }}"#, None),
            // Keys compare by their text, escapes or not.
            (set("ab", json!(2)), r#"{"a\u0062":1}"#, Some(r#"{"a\u0062":2}"#)),
            // The rest of the body is kept byte for byte.
            (set("b[1]", json!(3)), "{ \"a\" : 1 ,\n \"b\" : [ 1 , 2 ] }", Some("{ \"a\" : 1 ,\n \"b\" : [ 1 , 3 ] }")),
            (set("z", json!("é")), "{\"s\":\"caf\\u00e9\\n\", \"n\": 1e2}", Some("{\"s\":\"caf\\u00e9\\n\", \"n\": 1e2,\"z\":\"é\"}")),
            // Remove: one comma goes with the entry.
            (remove("a"), r#"{"a":1,"b":2,"c":3}"#, Some(r#"{"b":2,"c":3}"#)),
            (remove("b"), r#"{"a":1, "b":2, "c":3}"#, Some(r#"{"a":1, "c":3}"#)),
            (remove("c"), r#"{"a":1,"b":2,"c":3}"#, Some(r#"{"a":1,"b":2}"#)),
            (remove("a"), r#"{ "a" : [1,{"x":"}"}] }"#, Some("{  }")),
            (remove("$.metadata.user_id"), r#"{"metadata":{"user_id":"u"},"m":1}"#, Some(r#"{"metadata":{},"m":1}"#)),
            (remove("messages[0]"), r#"{"messages":[{"a":1},{"b":2}]}"#, Some(r#"{"messages":[{"b":2}]}"#)),
            (remove("messages.1"), r#"{"messages":[1,2,3]}"#, Some(r#"{"messages":[1,3]}"#)),
            (remove("nope"), r#"{"a":1}"#, None),
            (remove("a.b.c"), r#"{"a":{"x":1}}"#, None),
            (remove("a.b"), r#"{"a":"scalar"}"#, None),
            (remove("a[5]"), r#"{"a":[1]}"#, None),
        ];
        for (filter, body, want) in cases {
            let (got, failures) = body_after(std::slice::from_ref(&filter), body);
            assert!(failures.is_empty(), "{} on {body}: {failures:?}", filter.target);
            assert_eq!(got.as_deref(), want, "{:?} {} on {body}", filter.action, filter.target);
        }
    }

    #[test]
    fn body_paths_that_fail() {
        let set = |path: &str| rule(1, Body, JsonPath, path, Some(json!(1)));
        let cases = [
            (set("a[3]"), r#"{"a":[1]}"#, "past the end"),
            (set("a.x[2]"), r#"{"a":{}}"#, "past the end of a new array"),
            (set("a.name"), r#"{"a":[1]}"#, "not an array index"),
            (set("a.01"), r#"{"a":[1,2]}"#, "not an array index"),
            (set("a"), r#"{"a":1,"a":2}"#, "appears twice"),
            (rule(1, Body, Remove, "a", None), r#"{"a":1,"a":2}"#, "appears twice"),
            (set("a"), r#""just a string""#, "not a JSON object"),
            (set("a"), r#"{"a":1"#, "not JSON"),
            (replace(1, Body, Contains, "a", "b"), "model=x", "not JSON"),
        ];
        for (filter, body, want) in cases {
            let (got, failures) = body_after(std::slice::from_ref(&filter), body);
            assert_eq!(got, None, "{} on {body}", filter.target);
            assert_eq!(failures.len(), 1, "{} on {body}", filter.target);
            assert!(failures[0].starts_with("request filter 1 (f1): ") && failures[0].contains(want), "{failures:?}");
        }
    }

    #[test]
    fn body_text_replace() {
        let cases: Vec<(RequestFilter, &str, Option<&str>)> = vec![
            // Every string value, at any depth, nested arrays included.
            (
                replace(1, Body, Contains, "secret", "***"),
                r#"{"a":"my secret, your secret","b":[["secret"],{"c":["x secret"]}],"n":1}"#,
                Some(r#"{"a":"my ***, your ***","b":[["***"],{"c":["x ***"]}],"n":1}"#),
            ),
            // Keys, numbers and literals are not text.
            (replace(1, Body, Contains, "secret", "***"), r#"{"secret":1,"x":{"secret":true}}"#, None),
            (replace(1, Body, Contains, "12", "34"), r#"{"n":123,"b":true}"#, None),
            (replace(1, Body, Contains, "zzz", "y"), r#"{"a":"nothing here"}"#, None),
            // Exact: the whole string only.
            (replace(1, Body, Exact, "claude-opus", "claude-sonnet"), r#"{"model":"claude-opus","m":"claude-opus-4"}"#, Some(r#"{"model":"claude-sonnet","m":"claude-opus-4"}"#)),
            // Regex: every match, JavaScript replacement patterns.
            (replace(1, Body, Re, r"(\d{3})-(\d{4})", "$2-$1"), r#"{"t":"call 555-1234 or 555-9876"}"#, Some(r#"{"t":"call 1234-555 or 9876-555"}"#)),
            (replace(1, Body, Re, r"sk-[a-z0-9]{6}", "[$&]"), r#"{"t":"key sk-abc123!"}"#, Some(r#"{"t":"key [sk-abc123]!"}"#)),
            (replace(1, Body, Re, r"(?P<user>\w+)@example\.com", "$<user>@corp"), r#"{"t":"mail bob@example.com"}"#, Some(r#"{"t":"mail bob@corp"}"#)),
            (replace(1, Body, Re, r"^Hello", "Bye"), r#"{"a":"Hello Hello","b":"say Hello"}"#, Some(r#"{"a":"Bye Hello","b":"say Hello"}"#)),
            // Escapes: matched in the text, written back as valid JSON.
            (replace(1, Body, Contains, "\"hi\"", "\"bye\""), r#"{"t":"say \"hi\"\n\ttwice"}"#, Some(r#"{"t":"say \"bye\"\n\ttwice"}"#)),
            (replace(1, Body, Contains, "é", "e"), r#"{"t":"caf\u00e9 \/ caf\u00e9"}"#, Some(r#"{"t":"cafe / cafe"}"#)),
            (replace(1, Body, Contains, "x", "a\"b\\c\nd"), r#"{"t":"x"}"#, Some(r#"{"t":"a\"b\\c\nd"}"#)),
            (replace(1, Body, Contains, "机密", "[redacted]"), r#"{"t":"这是机密文件"}"#, Some(r#"{"t":"这是[redacted]文件"}"#)),
            // Only the changed strings are rewritten.
            (replace(1, Body, Contains, "b", "c"), "{ \"k\\u0031\" : \"\\u0061\" ,\n \"v\" : [ \"b\" ] }", Some("{ \"k\\u0031\" : \"\\u0061\" ,\n \"v\" : [ \"c\" ] }")),
            // A replacement that changes nothing writes nothing.
            (replace(1, Body, Contains, "same", "same"), r#"{"t":"same"}"#, None),
        ];
        for (filter, body, want) in cases {
            let (got, failures) = body_after(std::slice::from_ref(&filter), body);
            assert!(failures.is_empty(), "{failures:?}");
            assert_eq!(got.as_deref(), want, "{:?} {} on {body}", filter.match_type, filter.target);
        }
    }

    #[test]
    fn replacement_patterns() {
        // (regex, replacement, text, result), as JavaScript's replace gives.
        let cases = [
            (r"(a)(b)", "$2$1", "ab ab", "ba ba"),
            (r"(a)", "$$1", "a", "$1"),
            (r"(a)", "$3", "a", "$3"),
            (r"(a)", "$0", "a", "$0"),
            (r"(a)", "$11", "a", "a1"),
            (r"(a)(b)(c)(d)(e)(f)(g)(h)(i)(j)(k)", "$11", "abcdefghijk", "k"),
            (r"(a)", "$01", "a", "a"),
            (r"b", "[$`|$']", "abc", "a[a|c]c"),
            (r"(a)", "$<x>", "a", "$<x>"),
            (r"(?P<x>a)", "$<x>$<y>", "a", "a"),
            (r"(?P<x>a)", "$<x", "a", "$<x"),
            (r"(a)|(b)", "[$2]", "ab", "[][b]"),
            (r"x*", "-", "abc", "-a-b-c-"),
            (r"a", "$", "a", "$"),
        ];
        for (pattern, with, text, want) in cases {
            let filters = compile(&[replace(1, Body, Re, pattern, with)]);
            let Op::Body(BodyOp::Replace(rule)) = &filters.filters[0].op else { panic!() };
            assert_eq!(rule.apply(text).as_deref().unwrap_or(text), want, "{pattern} / {with} on {text}");
        }
    }

    #[test]
    fn regex_needles() {
        let cases: &[(&str, Option<&[&str]>)] = &[
            (r"sk-ant-[A-Za-z0-9_-]{20,}", Some(&["sk-ant-"])),
            (r"(?P<user>\w+)@example\.com", Some(&["@example.com"])),
            (r"[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}", None),
            (r"/repo/(\w+)", Some(&["/repo/"])),
            (r"(?i)jira\.acme\.com/browse/[A-Z]+-\d+", Some(&["jira.acme.com/browse/"])),
            (r"(?i)\b[a-z0-9-]+\.corp\.acme\.internal\b", Some(&[".corp.acme.internal"])),
            (r"\$\{VAR\}", Some(&["${var}"])),
            (r#"say "hi""#, Some(&[r#"say \"hi\""#])),
            (r"机密\d+", Some(&["机密"])),
            (r"cat|dog", Some(&["cat", "dog"])),
            (r"\d+", None),
        ];
        for (pattern, want) in cases {
            let filters = compile(&[replace(1, Body, Re, pattern, "x")]);
            let Op::Body(BodyOp::Replace(rule)) = &filters.filters[0].op else { panic!() };
            let got = rule.prefilter.as_ref().map(|p| p.needles.clone());
            assert_eq!(got, want.map(|w| w.iter().map(|s| s.to_string()).collect::<Vec<_>>()), "{pattern}");
        }
        // The prefilter never hides a match, however the string is escaped.
        let filters = compile(&[replace(1, Body, Re, r"key: s\.(\d)", "k$1"), replace(2, Body, Exact, "a/é\n", "x")]);
        let bodies = [
            (r#"["key: s.1", "key: s\u002e2", "key\u003a s.3", "key: s.\u0034", "\"key: s.5\"\n"]"#, r#"["k1", "k2", "k3", "k4", "\"k5\"\n"]"#),
            (r#"["a/é\n", "a\/\u00e9\n", "a/é\u000a", "a/\u00E9\n!"]"#, r#"["x", "x", "x", "a/\u00E9\n!"]"#),
        ];
        for (body, want) in bodies {
            let edits = filters.apply(Binding::Global, &Headers::default(), Some(body.as_bytes()));
            assert_eq!(String::from_utf8(edits.body.unwrap()).unwrap(), want);
        }
    }

    /// The needle search never changes what the filters make of a body,
    /// on many generated bodies; a scan made by one pass serves the next.
    #[test]
    fn prefilter_agrees_with_running_every_rule() {
        let list = [
            replace(1, Body, Re, r"(?i)\b[a-z0-9-]+\.corp\.acme\.internal\b", "[host]"),
            replace(2, Body, Re, r"(?i)jira\.acme\.com/browse/[A-Z]+-\d+", "[ticket]"),
            replace(3, Body, Re, r"\b10\.20\.\d{1,3}\.\d{1,3}\b", "[ip]"),
            replace(4, Body, Contains, "vault.corp.acme.internal", "[vault]"),
            replace(5, Body, Exact, "say \"hi\"", "bye"),
            replace(6, Body, Re, r"(?i)ärger|secret", "[x]"),
            replace(7, Body, Re, r"\d{3}-\d{4}", "[phone]"),
            replace(8, Body, Contains, "[host]", "[HOST]"),
            RequestFilter { binding: FilterBinding::Providers, provider_ids: vec![7], ..replace(9, Body, Re, r"(?i)browse/X", "b") },
        ];
        let filters = compile(&list);
        let mut unfiltered = filters.clone();
        for f in &mut unfiltered.filters {
            if let Op::Body(BodyOp::Replace(rule)) = &mut f.op {
                rule.prefilter = None;
            }
        }
        let pieces = [
            "build01.corp.acme.internal", "VAULT.Corp.Acme.Internal", "vault.corp.acme.internal", "x.corp\\u002eacme.internal",
            "JIRA.acme.com/browse/AB-12", "jira.acme.com/bro\\u017fe/A-1", "jira.acme.com/broſe/A-1", "10.20.1.2",
            "say \\\"hi\\\"", "ÄRGER", "ärger", "\\u00c4rger", "SECRET", "ſecret", "555-1234", " ", "/", "é", "\\n",
            "[host]",
        ];
        let mut rng = samples::XorShift(0x9E37_79B9_7F4A_7C15u64);
        let mut next = |n: usize| rng.below(n);
        let provider = Binding::Provider { id: 7, group_tags: &[] };
        let mut changed = 0;
        for _ in 0..2000 {
            let strings: Vec<String> = (0..1 + next(3))
                .map(|_| (0..1 + next(3)).map(|_| pieces[next(pieces.len())]).collect::<Vec<_>>().join(""))
                .collect();
            let body = format!(r#"{{"k":[{}],"say \"hi\"":1}}"#, strings.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(","));
            serde_json::from_str::<Value>(&body).unwrap_or_else(|e| panic!("{body}: {e}"));
            let want = unfiltered.apply(Binding::Global, &Headers::default(), Some(body.as_bytes()));
            let mut scan = None;
            let got = filters.apply_scanned(Binding::Global, &Headers::default(), Some(body.as_bytes()), &mut scan);
            assert_eq!(got, want, "{body}");
            changed += usize::from(got.body.is_some());
            // The provider pass, over the body the global one left.
            let after = got.body.clone().unwrap_or_else(|| body.clone().into_bytes());
            if got.body.is_some() {
                scan = None;
            }
            let want = unfiltered.apply(provider, &Headers::default(), Some(&after));
            assert_eq!(filters.apply_scanned(provider, &Headers::default(), Some(&after), &mut scan), want, "{body}");
        }
        assert!(changed > 1000, "{changed}");
    }

    #[test]
    fn header_filters() {
        let sent = headers(&[
            ("User-Agent", "claude-cli/2.1.0 (external, cli)"),
            ("X-Internal-Token", "t"),
            ("anthropic-beta", "a"),
            ("Anthropic-Beta", "b"),
            (":path", "/v1/messages"),
            ("content-length", "120"),
        ]);
        let set = |id, name: &str, value: &str| rule(id, Header, Set, name, Some(json!(value)));
        let remove = |id, name: &str| rule(id, Header, Remove, name, None);
        type Case<'a> = (Vec<RequestFilter>, &'a [(&'a str, &'a str)], &'a [&'a str]);
        let cases: Vec<Case> = vec![
            (vec![remove(1, "x-internal-token")], &[], &["x-internal-token"]),
            (vec![remove(1, "X-INTERNAL-TOKEN")], &[], &["x-internal-token"]),
            (vec![set(1, "X-Team", "core")], &[("x-team", "core")], &[]),
            (vec![set(1, "User-Agent", "custom")], &[("user-agent", "custom")], &[]),
            (vec![rule(1, Header, Set, "x-n", Some(json!(5)))], &[("x-n", "5")], &[]),
            // Later filters see the earlier ones' work.
            (vec![set(1, "x-a", "1"), remove(2, "X-A")], &[], &["x-a"]),
            (vec![remove(1, "x-a"), set(2, "x-a", "2")], &[("x-a", "2")], &[]),
            (vec![set(1, "x-a", "1"), set(2, "x-a", "2")], &[("x-a", "2")], &[]),
            (vec![set(1, "x-a", "key sk-1"), replace(2, Header, Contains, "sk-1", "***")], &[("x-a", "key ***")], &[]),
            (vec![remove(1, "user-agent"), replace(2, Header, Contains, "claude", "x")], &[], &["user-agent"]),
            // text_replace: in every header's value, never in names.
            (vec![replace(1, Header, Re, r"claude-cli/[\d.]+", "claude-cli/9.9.9")], &[("user-agent", "claude-cli/9.9.9 (external, cli)")], &[]),
            (vec![replace(1, Header, Contains, "user", "x")], &[], &[]),
            (vec![replace(1, Header, Exact, "t", "u")], &[("x-internal-token", "u")], &[]),
            // A repeated header is read joined, as fetch reads it.
            (vec![replace(1, Header, Exact, "a, b", "c")], &[("anthropic-beta", "c")], &[]),
            // Pseudo-headers and content-length are left alone.
            (vec![replace(1, Header, Contains, "1", "9")], &[("user-agent", "claude-cli/2.9.0 (external, cli)")], &[]),
            (vec![replace(1, Header, Contains, "v1", "v2")], &[], &[]),
        ];
        for (filters, want_set, want_removed) in cases {
            let edits = compile(&filters).apply(Binding::Global, &sent, None);
            let want_set: Vec<(String, String)> = want_set.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            assert_eq!(edits.set_headers, want_set, "{filters:?}");
            assert_eq!(edits.remove_headers, *want_removed, "{filters:?}");
            assert!(edits.body.is_none() && edits.failures.is_empty());
        }
    }

    #[test]
    fn unusable_filters_are_skipped_with_a_warning() {
        let mut no_match_type = replace(4, Body, Contains, "a", "b");
        no_match_type.match_type = None;
        let list = [
            replace(1, Body, Re, "(unclosed", "x"),
            rule(2, Body, JsonPath, "a..b", Some(json!(1))),
            rule(3, Header, JsonPath, "model", Some(json!(1))),
            no_match_type,
            rule(5, Header, Set, "x-a", None),
            rule(6, Header, Set, "bad name", Some(json!("v"))),
            rule(7, Header, Remove, "Content-Length", None),
            rule(8, Header, Set, ":authority", Some(json!("evil"))),
            rule(9, Header, Set, "x-a", Some(json!("a\r\nb: c"))),
            replace(10, Body, Re, r"\w{1000}{1000}", "x"),
            rule(11, Body, JsonPath, "a[x]", Some(json!(1))),
            rule(12, Body, Remove, "a[1", None),
            rule(13, Body, Remove, "", None),
            rule(14, Body, JsonPath, "$", Some(json!(1))),
            replace(15, Body, Contains, "", "x"),
            rule(16, Header, Set, "x-ok", Some(json!("fine"))),
            rule(17, Body, JsonPath, "a.", Some(json!(1))),
            rule(18, Body, JsonPath, "a]", Some(json!(1))),
        ];
        let (filters, warnings) = RequestFilters::compile(&list);
        assert_eq!(filters.filters.iter().map(|f| f.id).collect::<Vec<_>>(), [16]);
        assert_eq!(warnings.len(), 17, "{warnings:#?}");
        for (w, id) in warnings.iter().zip((1..=15).chain(17..=18)) {
            assert!(w.starts_with(&format!("request filter {id} skipped: ")), "{w}");
        }
        for path in ["a", "$.a", "a.b[0].c", "a[0][1]", "[0]", "$[0].x", "a.0", "$a", "a-b c"] {
            assert!(parse_path(path).is_ok(), "{path}");
        }
        assert_eq!(
            parse_path("$.messages[0].content.1").unwrap(),
            [Step::Key("messages".into()), Step::Index(0), Step::Key("content".into()), Step::Key("1".into())]
        );
        assert_eq!(parse_path("$a").unwrap(), [Step::Key("$a".into())]);
    }

    #[test]
    fn priority_orders_filters_lower_first_then_id() {
        let at = |id, priority, value: &str| RequestFilter { priority, ..rule(id, Body, JsonPath, "model", Some(json!(value))) };
        // Compiled order: (priority, id) ascending; the last writer wins.
        let filters = compile(&[at(5, 10, "p10"), at(2, -1, "p-1"), at(3, 10, "p10-id3"), at(9, 0, "p0")]);
        assert_eq!(filters.filters.iter().map(|f| f.id).collect::<Vec<_>>(), [2, 9, 3, 5]);
        let edits = filters.apply(Binding::Global, &Headers::default(), Some(br#"{"model":"m"}"#));
        assert_eq!(edits.body.unwrap(), br#"{"model":"p10"}"#);
        // A text replace sees the value set before it.
        let chain = [
            RequestFilter { priority: 2, ..replace(1, Body, Contains, "opus", "sonnet") },
            RequestFilter { priority: 1, ..rule(2, Body, JsonPath, "model", Some(json!("claude-opus"))) },
        ];
        let edits = compile(&chain).apply(Binding::Global, &Headers::default(), Some(br#"{"model":"x"}"#));
        assert_eq!(edits.body.unwrap(), br#"{"model":"claude-sonnet"}"#);
        // Changes that undo each other leave the body as sent.
        let undo = [replace(1, Body, Contains, "a", "b"), replace(2, Body, Contains, "b", "a")];
        let edits = compile(&undo).apply(Binding::Global, &Headers::default(), Some(br#"{"t":"a"}"#));
        assert_eq!(edits.body, None);
    }

    #[test]
    fn bindings() {
        let tag = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let set = |id, binding, providers: &[i64], groups: &[&str]| RequestFilter {
            binding,
            provider_ids: providers.to_vec(),
            group_tags: tag(groups),
            ..rule(id, Header, Set, &format!("x-f{id}"), Some(json!("1")))
        };
        let filters = compile(&[
            set(1, FilterBinding::Global, &[], &[]),
            set(2, FilterBinding::Providers, &[7, 8], &[]),
            set(3, FilterBinding::Groups, &[], &["vip", "beta"]),
            set(4, FilterBinding::Groups, &[], &["default"]),
            set(5, FilterBinding::Providers, &[9], &[]),
        ]);
        let run = |which: Binding<'_>| -> Vec<String> {
            let edits = filters.apply(which, &Headers::default(), None);
            edits.set_headers.into_iter().map(|(name, _)| name).collect()
        };
        let (vip, basic, none) = (tag(&["basic", "vip"]), tag(&["basic"]), tag(&[]));
        let cases: Vec<(Binding, &[&str])> = vec![
            (Binding::Global, &["x-f1"]),
            (Binding::Provider { id: 7, group_tags: &basic }, &["x-f2"]),
            (Binding::Provider { id: 8, group_tags: &vip }, &["x-f2", "x-f3"]),
            (Binding::Provider { id: 1, group_tags: &vip }, &["x-f3"]),
            // A provider without tags is in the `default` group.
            (Binding::Provider { id: 1, group_tags: &none }, &["x-f4"]),
            (Binding::Provider { id: 9, group_tags: &basic }, &["x-f5"]),
            (Binding::Provider { id: 2, group_tags: &basic }, &[]),
        ];
        for (which, want) in cases {
            assert_eq!(run(which), want, "{which:?}");
        }
        assert!(!filters.needs_body(Binding::Global));
        let body = compile(&[RequestFilter { binding: FilterBinding::Providers, provider_ids: vec![7], ..rule(1, Body, Remove, "a", None) }]);
        assert!(!body.needs_body(Binding::Global));
        assert!(body.needs_body(Binding::Provider { id: 7, group_tags: &none }));
        assert!(RequestFilters::default().is_empty() && !body.is_empty());
    }

    #[test]
    fn a_body_that_is_not_json_fails_body_filters_only() {
        let filters = compile(&[
            rule(1, Header, Set, "x-a", Some(json!("1"))),
            rule(2, Body, JsonPath, "model", Some(json!("m"))),
            replace(3, Body, Contains, "a", "b"),
        ]);
        let edits = filters.apply(Binding::Global, &Headers::default(), Some(b"not json"));
        assert_eq!(edits.set_headers, [("x-a".to_string(), "1".to_string())]);
        assert_eq!(edits.body, None);
        assert_eq!(edits.failures.len(), 2);
        assert!(edits.failures[0].starts_with("request filter 2 (f2): the body is not JSON"), "{:?}", edits.failures);
        assert!(edits.failures[1].starts_with("request filter 3 (f3): the body is not JSON"));
        // A failing filter is skipped; the others still run.
        let filters = compile(&[
            rule(1, Body, JsonPath, "messages[9]", Some(json!(1))),
            rule(2, Body, JsonPath, "model", Some(json!("m"))),
        ]);
        let edits = filters.apply(Binding::Global, &Headers::default(), Some(br#"{"messages":[],"model":"x"}"#));
        assert_eq!(edits.body.unwrap(), br#"{"messages":[],"model":"m"}"#);
        assert_eq!(edits.failures.len(), 1);
        assert!(edits.failures[0].starts_with("request filter 1 (f1): index 9 is past the end"));
        // No body (a GET): body filters have nothing to do.
        for body in [None, Some(&b""[..])] {
            let edits = filters.apply(Binding::Global, &Headers::default(), body);
            assert_eq!(edits, Edits::default());
            assert!(edits.is_empty());
        }
    }

    #[test]
    fn claude_code_body_round_trip() {
        let (body, _) = samples::claude_code_body();
        let filters = compile(&[
            rule(1, Body, JsonPath, "$.metadata.user_id", Some(json!("anon"))),
            replace(2, Body, Contains, "TOOL_RESULT_ONLY", "[tool]"),
            replace(3, Body, Re, r"src/(\w+)\.rs", "lib/$1.rs"),
            rule(4, Body, Remove, "tools[0]", None),
            replace(5, Body, Exact, "ephemeral", "ephemeral"),
        ]);
        let edits = filters.apply(Binding::Global, &Headers::default(), Some(&body));
        assert!(edits.failures.is_empty(), "{:?}", edits.failures);
        let got: Value = serde_json::from_slice(&edits.body.unwrap()).unwrap();
        let mut want: Value = serde_json::from_slice(&body).unwrap();
        want["metadata"]["user_id"] = json!("anon");
        want["tools"].as_array_mut().unwrap().remove(0);
        let text = serde_json::to_string(&want).unwrap().replace("TOOL_RESULT_ONLY", "[tool]").replace("src/parser.rs", "lib/parser.rs");
        assert_eq!(got, serde_json::from_str::<Value>(&text).unwrap());
    }

    /// `cargo test -p hubgate-core --release -- --ignored --nocapture filter_cost`.
    #[test]
    #[ignore]
    fn filter_cost() {
        use std::time::Instant;

        let (body, _) = samples::claude_code_body();
        let sent = headers(&[
            ("user-agent", "claude-cli/2.1.197 (external, cli)"),
            ("x-api-key", "hg-0123456789abcdef"),
            ("anthropic-version", "2023-06-01"),
            ("anthropic-beta", "claude-code-20250219,interleaved-thinking-2025-05-14"),
            ("x-stainless-os", "Linux"),
            ("content-type", "application/json"),
        ]);
        let p = |priority: i32, f: RequestFilter| RequestFilter { priority, ..f };
        // 20 filters; four of the body ones change something.
        let mix = vec![
            p(1, rule(1, Header, Remove, "x-stainless-os", None)),
            p(2, rule(2, Header, Set, "x-gateway", Some(json!("hubgate")))),
            p(3, rule(3, Header, Set, "anthropic-version", Some(json!("2023-06-01")))),
            p(4, replace(4, Header, Contains, "interleaved-thinking-2025-05-14", "")),
            p(5, replace(5, Header, Re, r"claude-cli/(\d+)\.\d+\.\d+", "claude-cli/$1.x")),
            p(6, rule(6, Header, Remove, "x-internal-token", None)),
            p(7, rule(7, Body, JsonPath, "$.metadata.user_id", Some(json!("anon")))),
            p(8, rule(8, Body, JsonPath, "max_tokens", Some(json!(32000)))),
            p(9, rule(9, Body, Remove, "temperature", None)),
            p(10, rule(10, Body, Set, "thinking.budget_tokens", Some(json!(16000)))),
            p(11, replace(11, Body, Contains, "internal.corp.example", "example.com")),
            p(12, replace(12, Body, Contains, "TOOL_RESULT_ONLY", "[tool output]")),
            p(13, replace(13, Body, Exact, "claude-opus-4-1", "claude-sonnet-4-5")),
            p(14, replace(14, Body, Exact, "ephemeral", "ephemeral")),
            p(15, replace(15, Body, Re, r"sk-ant-[A-Za-z0-9_-]{20,}", "[REDACTED]")),
            p(16, replace(16, Body, Re, r"\b\d{3}-\d{3}-\d{4}\b", "[PHONE]")),
            p(17, replace(17, Body, Re, r"[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}", "[EMAIL]")),
            p(18, replace(18, Body, Re, r"/repo/(\w+)", "/workspace/$1")),
            p(19, rule(19, Body, Remove, "metadata.nonexistent", None)),
            p(20, rule(20, Header, Set, "x-team", Some(json!("core")))),
        ];
        let started = Instant::now();
        let filters = compile(&mix);
        let compile_time = started.elapsed();
        let no_match: Vec<RequestFilter> = mix
            .iter()
            .filter(|f| ![7, 10, 12, 18].contains(&f.id) && f.scope == Body)
            .cloned()
            .collect();
        let idle = compile(&no_match);
        let time = samples::time;
        println!("body {} bytes; compile 20 filters {:.1} µs", body.len(), compile_time.as_secs_f64() * 1e6);
        let edits = filters.apply(Binding::Global, &sent, Some(&body));
        assert!(edits.failures.is_empty() && edits.body.is_some(), "{:?}", edits.failures);
        println!("{} headers set, {} removed, body {} bytes", edits.set_headers.len(), edits.remove_headers.len(), edits.body.map_or(0, |b| b.len()));
        time("20 filters (6 header, 14 body; 4 body ones change it)", &|| {
            assert!(filters.apply(Binding::Global, &sent, Some(&body)).body.is_some())
        });
        time(&format!("{} body filters that change nothing", no_match.len()), &|| {
            assert!(idle.apply(Binding::Global, &sent, Some(&body)).body.is_none())
        });
        for f in &mix {
            let one = compile(std::slice::from_ref(f));
            time(&format!("  filter {:>2} {:?} {:?} {:?}", f.id, f.scope, f.action, f.match_type), &|| {
                one.apply(Binding::Global, &sent, Some(&body));
            });
        }
        time("no filter for this provider", &|| {
            assert!(filters.apply(Binding::Provider { id: 1, group_tags: &[] }, &sent, Some(&body)).is_empty())
        });
    }

    /// The bench's request filters (tests/e2e hubgate-bench): 10 contains,
    /// 4 regex and 2 exact body `text_replace` rules, none matching a 115 KB
    /// Claude Code request; the global pass, then the provider-bound one.
    /// `cargo test -p hubgate-core --release -- --ignored --nocapture bench_filters_cost`.
    #[test]
    #[ignore]
    fn bench_filters_cost() {
        use std::time::Instant;
        let (body, _) = samples::claude_code_body();
        let mut list = Vec::new();
        let hosts = [
            "build01.corp.acme.internal", "ci-runner.corp.acme.internal", "vault.corp.acme.internal",
            "grafana.corp.acme.internal", "git.corp.acme.internal", "artifactory.corp.acme.internal",
            "db-primary.prod.acme.internal", "kafka-3.prod.acme.internal", "ldap.corp.acme.internal",
            "payroll.hr.acme.internal",
        ];
        for host in hosts {
            list.push(replace(list.len() as i64 + 1, Body, Contains, host, "[internal-host]"));
        }
        for pattern in [
            r"(?i)\b[a-z0-9-]+\.corp\.acme\.internal\b",
            r"/home/[a-z]+/\.ssh/id_[a-z0-9]+",
            r"(?i)jira\.acme\.com/browse/[A-Z]+-\d+",
            r"\b10\.20\.\d{1,3}\.\d{1,3}\b",
        ] {
            list.push(replace(list.len() as i64 + 1, Body, Re, pattern, "[x]"));
        }
        for text in ["print the production database password", "show me the payroll export"] {
            list.push(replace(list.len() as i64 + 1, Body, Exact, text, "[removed by policy]"));
        }
        let count = list.len();
        for (i, f) in list.iter_mut().enumerate() {
            f.priority = i as i32 * 10;
            if i + 3 >= count {
                f.binding = FilterBinding::Providers;
                f.provider_ids = vec![7];
            }
        }
        let filters = compile(&list);
        let provider = Binding::Provider { id: 7, group_tags: &[] };
        let best = |f: &dyn Fn()| {
            (0..30)
                .map(|_| {
                    let started = Instant::now();
                    for _ in 0..10 {
                        f();
                    }
                    started.elapsed().as_secs_f64() * 1e6 / 10.0
                })
                .fold(f64::INFINITY, f64::min)
        };
        let both = best(&|| {
            assert!(filters.apply(Binding::Global, &Headers::default(), Some(&body)).body.is_none());
            assert!(filters.apply(provider, &Headers::default(), Some(&body)).body.is_none());
        });
        println!("bench filters, global + provider pass over {} bytes: {both:.1} µs", body.len());
    }
}
