//! Seen parts: each worker VM remembers the big parts of recent request
//! bodies byte for byte, with what the guards found in them under the
//! current policy, so that a conversation resent with one more turn is not
//! read in full again.
//!
//! A part is one value of at least `MIN_PART` bytes: an element of
//! `messages`, `system`, `tools` (Responses `input`, Gemini `contents`), or
//! the whole value of a text field such as Responses `instructions` or
//! Gemini `systemInstruction`. [`read`] walks the top level of a body
//! itself. At each value it looks up remembered parts by a hash of the
//! first bytes, compares the remembered bytes with the body's and checks
//! that the value ends there (a `,` or the closing bracket follows): equal
//! bytes of a complete JSON value are the same value, read the same way.
//! Other values are read with serde (so they are validated as the full read
//! would), and the big ones become new parts.
//!
//! Any unusual body (a repeated or escaped top-level key, another API's
//! conversation field, a value of an unexpected kind where the guards
//! expect an array, invalid JSON…) is left to the full read: `read`
//! returns `None`, and the outcome is always today's.
//!
//! Guards record what they checked in [`BodyParts`]; [`SeenParts::remember`]
//! keeps the parts with those findings once the body guards passed. A new
//! policy version forgets everything.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::rc::Rc;

use serde::de::IgnoredAny;

use crate::api::Endpoint;
use crate::body_text::{value_texts, Shape};
use crate::request::{inspect, RequestInfo};

/// Smaller values are read each time.
pub const MIN_PART: usize = 1024;
/// Bytes one VM keeps (part bytes, their texts, and `OVERHEAD` each).
pub const BUDGET: usize = 4 << 20;
/// A bigger value is read each time rather than push out everything else.
const MAX_PART: usize = 1 << 20;
const OVERHEAD: usize = 64;
/// Bytes hashed to find candidates: `SAMPLE` bytes at each of these
/// offsets, all within `MIN_PART`, so any value that could be a part has
/// them. Turns often begin alike (`{"role":"user","content":[{"type":…`);
/// samples further in tell them apart.
const SAMPLES: [usize; 3] = [0, MIN_PART / 2 - SAMPLE, MIN_PART - SAMPLE];
const SAMPLE: usize = 32;
/// Remembered parts with the same key (shape and first bytes) at most: the
/// oldest makes room. Turns often start alike, and each is compared.
const MAX_CANDIDATES: usize = 8;
/// Bytes compared against remembered parts per body byte, at most: past
/// that the body is read in full (a body of near-copies of seen parts costs
/// no more than a full read).
const COMPARE_PER_BYTE: usize = 2;
/// The first turns of a conversation that the fallback session id reads.
const FIRST_TURNS: usize = 3;
/// A first turn nested deeper is left to the full read: serde's recursion
/// limit counts from the body's start, not the turn's.
const MAX_TURN_NESTING: usize = 100;

/// The parts one VM remembers, all under one policy version.
#[derive(Default)]
pub struct SeenParts {
    version: Option<u64>,
    /// By `key`: a hash of the shape and the `SAMPLES`.
    parts: HashMap<u64, Vec<Part>>,
    /// Last use → key: the oldest first.
    ages: BTreeMap<u64, u64>,
    size: usize,
    clock: u64,
}

struct Part {
    bytes: Box<[u8]>,
    shape: Option<Shape>,
    texts: Vec<Rc<str>>,
    /// The sensitive-word guard found nothing in `texts`.
    words_clean: bool,
    /// No body request filter's needle is in `bytes`.
    needles_clean: bool,
    last_use: u64,
}

impl Part {
    fn size(&self) -> usize {
        self.bytes.len() + self.texts.iter().map(|t| t.len()).sum::<usize>() + OVERHEAD
    }
}

/// A text of the body (as `body_text::user_texts` gives it) and whether it
/// lies in a seen part that the sensitive-word guard found clean.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text {
    pub text: Rc<str>,
    pub seen: bool,
}

/// What [`read`] found in one body, and what the guards then checked.
#[derive(Debug, Default)]
pub struct BodyParts {
    /// The policy version the parts' findings hold for.
    pub version: u64,
    /// Equal to `request::inspect`'s.
    pub info: RequestInfo,
    /// The texts of `user_texts`, in its order.
    pub texts: Vec<Text>,
    /// The body's bytes outside the seen parts known free of request-filter
    /// needles, in order. Each part's bytes are a range of their own.
    pub uncovered: Vec<Range<usize>>,
    /// Set by the sensitive-word guard: no word in the texts not `seen`.
    pub words_checked: bool,
    /// Per `uncovered` range, no needle in it, once checked.
    needles: Option<Vec<bool>>,
    pieces: Vec<Piece>,
    /// The conversation array's first elements; `None` without one.
    first_turns: Option<Vec<Range<usize>>>,
}

/// One part-sized value of the body, seen before or new.
#[derive(Debug)]
struct Piece {
    range: Range<usize>,
    key: u64,
    shape: Option<Shape>,
    texts: Vec<Rc<str>>,
    seen: bool,
    words_clean: bool,
    needles_clean: bool,
    /// Its index in `uncovered`, unless known needle-free.
    uncovered: Option<usize>,
}

impl BodyParts {
    /// The texts the sensitive-word guard has not found clean before.
    pub fn new_texts(&self) -> impl Iterator<Item = &str> {
        self.texts.iter().filter(|t| !t.seen).map(|t| &*t.text)
    }

    /// Whether no uncovered byte range of `body` holds a needle, as
    /// `free` tells for one range. Checked once; later calls reuse it.
    pub fn needle_free(&mut self, body: &[u8], free: impl Fn(&[u8]) -> bool) -> bool {
        let uncovered = &self.uncovered;
        let flags = self
            .needles
            .get_or_insert_with(|| uncovered.iter().map(|r| body.get(r.clone()).is_some_and(&free)).collect());
        flags.iter().all(|&f| f)
    }

    /// The bytes of the conversation array's first element.
    pub fn first_turn<'b>(&self, body: &'b [u8]) -> Option<&'b [u8]> {
        body.get(self.first_turns.as_ref()?.first()?.clone())
    }

    /// The first turns of the conversation array (at most three), for the
    /// fallback session id: `Some(None)` when the body has no conversation
    /// array, `None` when the full read must decide.
    pub fn first_turns<'b>(&self, body: &'b [u8]) -> Option<Option<Vec<&'b [u8]>>> {
        let Some(ranges) = &self.first_turns else {
            return Some(None);
        };
        let mut turns = Vec::with_capacity(ranges.len());
        for range in ranges {
            let turn = body.get(range.clone())?;
            if nesting(turn) > MAX_TURN_NESTING {
                return None;
            }
            turns.push(turn);
        }
        Some(Some(turns))
    }
}

impl SeenParts {
    /// Bytes held, overhead included.
    pub fn size(&self) -> usize {
        self.size
    }

    pub fn len(&self) -> usize {
        self.ages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ages.is_empty()
    }

    /// Makes the parts hold for `version`: another version forgets them.
    fn use_version(&mut self, version: u64) {
        if self.version != Some(version) {
            *self = SeenParts { version: Some(version), ..SeenParts::default() };
        }
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// The remembered part that `rest` starts with, as a complete value
    /// followed by one of `closers`; its use is refreshed. The bytes
    /// compared come off `budget`; `Err` once it would run out.
    fn find(
        &mut self,
        key: u64,
        shape: Option<Shape>,
        rest: &[u8],
        closers: &[u8],
        budget: &mut usize,
    ) -> Result<Option<&Part>, OutOfBudget> {
        let now = self.clock + 1;
        let Some(candidates) = self.parts.get_mut(&key) else { return Ok(None) };
        let mut found = None;
        for (i, p) in candidates.iter().enumerate() {
            if p.shape != shape || !rest.get(skip_ws(rest, p.bytes.len())).is_some_and(|b| closers.contains(b)) {
                continue;
            }
            *budget = budget.checked_sub(p.bytes.len()).ok_or(OutOfBudget)?;
            if rest.get(..p.bytes.len()).is_some_and(|r| same_bytes(r, &p.bytes)) {
                found = Some(i);
                break;
            }
        }
        let Some(part) = found.and_then(|i| candidates.get_mut(i)) else { return Ok(None) };
        self.ages.remove(&part.last_use);
        self.ages.insert(now, key);
        part.last_use = now;
        self.clock = now;
        Ok(Some(part))
    }

    /// Keeps the parts of a body the body guards have passed, with what
    /// they checked, and updates the findings of those seen before.
    /// `body` must be the one `parts` was read from, unchanged.
    pub fn remember(&mut self, parts: &BodyParts, body: &[u8]) {
        if self.version != Some(parts.version) {
            return;
        }
        for piece in &parts.pieces {
            let words_clean = piece.words_clean || parts.words_checked;
            let needle_free = piece.uncovered.and_then(|i| parts.needles.as_ref()?.get(i).copied());
            let needles_clean = piece.needles_clean || needle_free == Some(true);
            if piece.seen && words_clean == piece.words_clean && needles_clean == piece.needles_clean {
                continue;
            }
            let Some(bytes) = body.get(piece.range.clone()) else {
                continue;
            };
            if let Some(part) = self
                .parts
                .get_mut(&piece.key)
                .and_then(|c| c.iter_mut().find(|p| p.shape == piece.shape && same_bytes(&p.bytes, bytes)))
            {
                part.words_clean |= words_clean;
                part.needles_clean |= needles_clean;
                continue;
            }
            self.make_room(piece.key);
            let part = Part {
                bytes: bytes.into(),
                shape: piece.shape,
                texts: piece.texts.clone(),
                words_clean,
                needles_clean,
                last_use: self.tick(),
            };
            self.size += part.size();
            self.ages.insert(part.last_use, piece.key);
            self.parts.entry(piece.key).or_default().push(part);
        }
        while self.size > BUDGET {
            self.drop_oldest();
        }
    }

    /// Drops the oldest part under `key` when it has `MAX_CANDIDATES`.
    fn make_room(&mut self, key: u64) {
        let Some(candidates) = self.parts.get_mut(&key) else { return };
        if candidates.len() < MAX_CANDIDATES {
            return;
        }
        let oldest = candidates.iter().enumerate().min_by_key(|(_, p)| p.last_use).map(|(i, _)| i);
        if let Some(i) = oldest {
            let part = candidates.swap_remove(i);
            self.ages.remove(&part.last_use);
            self.size = self.size.saturating_sub(part.size());
        }
    }

    fn drop_oldest(&mut self) {
        let Some((age, key)) = self.ages.pop_first() else {
            self.size = 0;
            return;
        };
        let Some(candidates) = self.parts.get_mut(&key) else {
            return;
        };
        if let Some(i) = candidates.iter().position(|p| p.last_use == age) {
            let part = candidates.swap_remove(i);
            self.size = self.size.saturating_sub(part.size());
        }
        if candidates.is_empty() {
            self.parts.remove(&key);
        }
    }
}

/// Reads a body of `endpoint` with the parts `seen` remembers for policy
/// `version` (forgetting them if they are of another version). `None`:
/// read it in full.
pub fn read(seen: &mut SeenParts, version: u64, endpoint: Endpoint, path: &str, body: &[u8]) -> Option<BodyParts> {
    let conversation: &[u8] = match endpoint {
        Endpoint::Other => return None,
        Endpoint::OpenAiResponses => b"input",
        Endpoint::Gemini { .. } => b"contents",
        Endpoint::AnthropicMessages | Endpoint::AnthropicCountTokens | Endpoint::OpenAiChat => b"messages",
    };
    seen.use_version(version);
    let budget = body.len().saturating_mul(COMPARE_PER_BYTE);
    let mut walk = Walk { body, pos: 0, seen, budget, out: BodyParts { version, ..BodyParts::default() } };
    let mut fields = walk.object(conversation)?;
    fields.info.push(b'}');
    let mut info = inspect(endpoint, path, &fields.info).ok()?;
    info.message_count = fields.messages;
    let mut out = walk.out;
    out.info = info;
    out.uncovered = uncovered(&mut out.pieces, body.len());
    Some(out)
}

/// The top-level fields read besides the parts: `info` is a JSON object of
/// those `request::inspect` reads (but the conversation), not yet closed.
struct Fields {
    info: Vec<u8>,
    messages: usize,
}

/// What a top-level field is to the walk.
enum Field {
    /// The conversation array of the endpoint's API (its elements turns).
    Conversation,
    /// Read for texts (`body_text`).
    Texts(Shape),
    Tools,
    /// Read by `request::inspect`.
    Info,
    Other,
}

fn field(key: &[u8], conversation: &[u8]) -> Option<Field> {
    Some(match key {
        b"messages" | b"input" | b"contents" if key == conversation => Field::Conversation,
        // Another API's conversation: `inspect` and the session id read
        // some of them whatever the endpoint.
        b"messages" | b"input" | b"contents" => return None,
        b"system" | b"prompt" | b"instructions" => Field::Texts(Shape::Texts),
        b"systemInstruction" | b"system_instruction" => Field::Texts(Shape::Turns),
        b"tools" => Field::Tools,
        b"model" | b"stream" | b"max_tokens" | b"max_output_tokens" | b"metadata" | b"prompt_cache_key"
        | b"previous_response_id" | b"stream_options" => Field::Info,
        _ => Field::Other,
    })
}

/// Remembered bytes may no longer be compared: read the body in full.
#[derive(Debug)]
struct OutOfBudget;

struct Walk<'b, 's> {
    body: &'b [u8],
    pos: usize,
    seen: &'s mut SeenParts,
    /// Bytes that may still be compared against remembered parts.
    budget: usize,
    out: BodyParts,
}

impl<'b> Walk<'b, '_> {
    fn peek(&self) -> Option<u8> {
        self.body.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        self.pos = skip_ws(self.body, self.pos);
    }

    /// The next byte, after whitespace, if it is one of `expected`.
    fn eat(&mut self, expected: &[u8]) -> Option<u8> {
        self.skip_ws();
        let b = self.peek().filter(|b| expected.contains(b))?;
        self.pos += 1;
        Some(b)
    }

    fn object(&mut self, conversation: &[u8]) -> Option<Fields> {
        let mut fields = Fields { info: b"{".to_vec(), messages: 0 };
        let mut keys: Vec<&[u8]> = Vec::new();
        self.eat(b"{")?;
        if self.eat(b"\"}")? == b'}' {
            return self.end(fields);
        }
        loop {
            let key = self.key()?;
            if keys.contains(&key) {
                return None;
            }
            keys.push(key);
            self.eat(b":")?;
            self.skip_ws();
            let is_array = self.peek() == Some(b'[');
            match field(key, conversation)? {
                Field::Conversation if is_array => {
                    let (count, first) = self.array(Some(Shape::Turn), FIRST_TURNS)?;
                    fields.messages = count;
                    self.out.first_turns = Some(first);
                }
                Field::Conversation => return None,
                Field::Texts(shape) if is_array => {
                    let item = if shape == Shape::Texts { Shape::Block } else { Shape::Turn };
                    self.array(Some(item), 0)?;
                }
                Field::Texts(shape) => {
                    self.value(Some(shape), b",}")?;
                }
                Field::Tools if is_array => {
                    self.array(None, 0)?;
                }
                Field::Info => {
                    let start = self.pos;
                    self.pos += skip_value(self.body.get(start..)?)?;
                    if fields.info.len() > 1 {
                        fields.info.push(b',');
                    }
                    fields.info.push(b'"');
                    fields.info.extend_from_slice(key);
                    fields.info.extend_from_slice(b"\":");
                    fields.info.extend_from_slice(self.body.get(start..self.pos)?);
                }
                Field::Tools | Field::Other => {
                    self.pos += skip_value(self.body.get(self.pos..)?)?;
                }
            }
            if self.eat(b",}")? == b'}' {
                return self.end(fields);
            }
            self.eat(b"\"")?;
        }
    }

    /// Nothing but whitespace may follow the body's object.
    fn end(&mut self, fields: Fields) -> Option<Fields> {
        self.skip_ws();
        (self.pos == self.body.len()).then_some(fields)
    }

    /// A key after its opening quote: plain ASCII only (an escape or
    /// other bytes are left to the full read).
    fn key(&mut self) -> Option<&'b [u8]> {
        let body = self.body;
        let rest = body.get(self.pos..)?;
        let len = rest.iter().position(|&b| b == b'"')?;
        let key = rest.get(..len)?;
        if !key.iter().all(|&b| (0x20..0x7f).contains(&b) && b != b'\\') {
            return None;
        }
        self.pos += len + 1;
        Some(key)
    }

    /// The elements of an array, the `[` next: how many, and the ranges
    /// of the first `keep`.
    fn array(&mut self, shape: Option<Shape>, keep: usize) -> Option<(usize, Vec<Range<usize>>)> {
        self.eat(b"[")?;
        let mut count = 0;
        let mut first = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Some((0, first));
        }
        loop {
            self.skip_ws();
            let range = self.value(shape, b",]")?;
            if count < keep {
                first.push(range);
            }
            count += 1;
            if self.eat(b",]")? == b']' {
                return Some((count, first));
            }
        }
    }

    /// One value, read as `shape` (`None`: only validated); `closers` may
    /// follow it. A seen part is taken as remembered.
    fn value(&mut self, shape: Option<Shape>, closers: &[u8]) -> Option<Range<usize>> {
        let start = self.pos;
        let rest = self.body.get(start..)?;
        let key = (rest.len() >= MIN_PART).then(|| key_of(shape, rest)).flatten();
        if let Some(key) = key {
            if let Some(part) = self.seen.find(key, shape, rest, closers, &mut self.budget).ok()? {
                let end = start + part.bytes.len();
                let words_clean = part.words_clean;
                self.out.texts.extend(part.texts.iter().map(|t| Text { text: t.clone(), seen: words_clean }));
                self.out.pieces.push(Piece {
                    range: start..end,
                    key,
                    shape,
                    texts: part.texts.clone(),
                    seen: true,
                    words_clean,
                    needles_clean: part.needles_clean,
                    uncovered: None,
                });
                self.pos = end;
                return Some(start..end);
            }
        }
        let (texts, len) = match shape {
            Some(shape) => value_texts(shape, rest)?,
            None => (Vec::new(), skip_value(rest)?),
        };
        let texts: Vec<Rc<str>> = texts.iter().map(|t| Rc::from(t.as_ref())).collect();
        self.out.texts.extend(texts.iter().map(|t| Text { text: t.clone(), seen: false }));
        let end = start + len;
        if let Some(key) = key.filter(|_| (MIN_PART..=MAX_PART).contains(&len)) {
            self.out.pieces.push(Piece {
                range: start..end,
                key,
                shape,
                texts,
                seen: false,
                words_clean: false,
                needles_clean: false,
                uncovered: None,
            });
        }
        self.pos = end;
        Some(start..end)
    }
}

/// The body's ranges outside pieces known needle-free: the gaps between
/// pieces, and each other piece on its own.
fn uncovered(pieces: &mut [Piece], len: usize) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut from = 0;
    for piece in pieces {
        if piece.range.start > from {
            out.push(from..piece.range.start);
        }
        if !piece.needles_clean {
            piece.uncovered = Some(out.len());
            out.push(piece.range.clone());
        }
        from = piece.range.end;
    }
    if len > from {
        out.push(from..len);
    }
    out
}

/// The length of the JSON value at the start of `s`, validated by serde as
/// a full read skips it.
fn skip_value(s: &[u8]) -> Option<usize> {
    let mut values = serde_json::Deserializer::from_slice(s).into_iter::<IgnoredAny>();
    values.next()?.ok()?;
    Some(values.byte_offset())
}

/// JSON whitespace (not form feed).
fn skip_ws(s: &[u8], mut i: usize) -> usize {
    while matches!(s.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// A hash of `shape` and the `SAMPLES` of `s`.
fn key_of(shape: Option<Shape>, s: &[u8]) -> Option<u64> {
    let shape = match shape {
        None => 0,
        Some(Shape::Body) => 1,
        Some(Shape::Texts) => 2,
        Some(Shape::Block) => 3,
        Some(Shape::Turns) => 4,
        Some(Shape::Turn) => 5,
    };
    let mut hash: u64 = shape;
    for at in SAMPLES {
        for chunk in s.get(at..at + SAMPLE)?.chunks_exact(8) {
            hash = (hash.rotate_left(5) ^ word(chunk)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    Some(hash)
}

fn word(chunk: &[u8]) -> u64 {
    u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]))
}

/// `a == b`, eight bytes at a time: wasm's `memcmp` goes byte by byte.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (a_words, b_words) = (a.chunks_exact(32), b.chunks_exact(32));
    let (a_tail, b_tail) = (a_words.remainder(), b_words.remainder());
    for (x, y) in a_words.zip(b_words) {
        let mut diff = 0;
        for (p, q) in x.chunks_exact(8).zip(y.chunks_exact(8)) {
            diff |= word(p) ^ word(q);
        }
        if diff != 0 {
            return false;
        }
    }
    a_tail == b_tail
}

/// How deep arrays and objects nest in the JSON text `s`.
fn nesting(s: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0, false, false);
    for &b in s {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body_text::samples::{claude_code_body, prose};
    use crate::body_text::user_texts;
    use crate::guards::session::{fallback_session_id, fallback_session_id_of_turns};
    use serde_json::{json, Value};

    const MESSAGES: &str = "/v1/messages?beta=true";
    const GEMINI_PATH: &str = "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse";
    const GEMINI: Endpoint = Endpoint::Gemini { stream: true, conversation: true };

    /// Reads `body` with `seen` and checks the result against the full
    /// read; then remembers its parts as if every guard found them clean.
    fn read_checked(seen: &mut SeenParts, endpoint: Endpoint, path: &str, body: &[u8]) -> BodyParts {
        let mut parts = read(seen, 1, endpoint, path, body)
            .unwrap_or_else(|| panic!("gave up on {}", String::from_utf8_lossy(body)));
        assert_eq!(parts.info, inspect(endpoint, path, body).unwrap());
        let texts: Vec<&str> = parts.texts.iter().map(|t| &*t.text).collect();
        assert_eq!(texts, user_texts(endpoint, body).unwrap());
        // The uncovered ranges and the needle-free parts tile the body.
        let mut tiles: Vec<Range<usize>> = parts.uncovered.clone();
        tiles.extend(parts.pieces.iter().filter(|p| p.uncovered.is_none()).map(|p| p.range.clone()));
        tiles.sort_by_key(|r| r.start);
        let mut at = 0;
        for tile in tiles {
            assert_eq!(tile.start, at);
            at = tile.end;
        }
        assert_eq!(at, body.len());
        if endpoint.is_conversation() {
            let turns = parts.first_turns(body).unwrap();
            let via_parts = turns.and_then(|t| fallback_session_id_of_turns(9, &t));
            assert_eq!(via_parts, fallback_session_id(endpoint, 9, body));
        }
        parts.words_checked = true;
        assert!(parts.needle_free(body, |_| true));
        seen.remember(&parts, body);
        parts
    }

    fn new_texts(parts: &BodyParts) -> Vec<&str> {
        parts.new_texts().collect()
    }

    fn uncovered_bytes(parts: &BodyParts) -> usize {
        parts.uncovered.iter().map(|r| r.len()).sum()
    }

    fn to_vec(v: &Value) -> Vec<u8> {
        serde_json::to_vec(v).unwrap()
    }

    #[test]
    fn claude_code_body_first_seen_and_seen_again() {
        let (body, expected) = claude_code_body();
        let mut seen = SeenParts::default();
        let cold = read_checked(&mut seen, Endpoint::AnthropicMessages, MESSAGES, &body);
        assert_eq!(new_texts(&cold), expected);
        assert_eq!(uncovered_bytes(&cold), body.len());
        assert!(seen.len() >= 27, "{}", seen.len());

        let again = read_checked(&mut seen, Endpoint::AnthropicMessages, MESSAGES, &body);
        assert!(uncovered_bytes(&again) < 2_000, "{}", uncovered_bytes(&again));
        // Only texts of turns under MIN_PART are read again.
        let small: Vec<&str> = expected.iter().map(String::as_str).filter(|t| t.len() < 200).collect();
        assert_eq!(new_texts(&again), small[2..]);
    }

    #[test]
    fn claude_code_body_with_a_new_or_changed_turn_or_system_prompt() {
        let (body, _) = claude_code_body();
        let mut seen = SeenParts::default();
        read_checked(&mut seen, Endpoint::AnthropicMessages, MESSAGES, &body);
        let base: Value = serde_json::from_slice(&body).unwrap();

        // The next request: one more exchange, with a big tool result.
        let mut next = base.clone();
        let messages = next["messages"].as_array_mut().unwrap();
        messages.push(json!({"role": "assistant", "content": [{"type": "tool_use", "id": "t9", "name": "Tool3", "input": {}}]}));
        messages.push(json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t9", "content": prose(700, 5_000)},
            {"type": "text", "text": format!("new question {}", prose(701, 1_500))},
        ]}));
        let next = to_vec(&next);
        let parts = read_checked(&mut seen, Endpoint::AnthropicMessages, MESSAGES, &next);
        let fresh = new_texts(&parts);
        assert!(fresh.iter().any(|t| t.starts_with("new question")), "{fresh:?}");
        assert!(fresh.iter().all(|t| t.len() < 2_000), "only the new turn and small ones: {fresh:?}");
        assert!(uncovered_bytes(&parts) < 10_000, "{}", uncovered_bytes(&parts));

        // The last user turn edited instead.
        let mut edited = base.clone();
        edited["messages"][6]["content"][1]["text"] = json!("changed".repeat(300));
        let parts = read_checked(&mut seen, Endpoint::AnthropicMessages, MESSAGES, &to_vec(&edited));
        assert!(new_texts(&parts).contains(&"changed".repeat(300).as_str()));

        // Another system prompt: that block is new, the tools still seen.
        let mut system = base.clone();
        system["system"][2]["text"] = json!(format!("You are a different tool. {}", prose(9, 16_000)));
        let system = to_vec(&system);
        let parts = read_checked(&mut seen, Endpoint::AnthropicMessages, MESSAGES, &system);
        assert!(new_texts(&parts).iter().any(|t| t.starts_with("You are a different tool.")));
        assert!(uncovered_bytes(&parts) < 20_000, "{}", uncovered_bytes(&parts));
    }

    fn big_openai_chat() -> Value {
        json!({
            "model": "gpt-5", "stream": true, "max_tokens": 100, "temperature": 0.2,
            "messages": [
                {"role": "system", "content": prose(1, 3_000)},
                {"role": "user", "content": [{"type": "text", "text": prose(2, 2_000)}, {"type": "image_url", "image_url": {"url": "data:x"}}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": prose(3, 1_500)}}]},
                {"role": "tool", "tool_call_id": "c1", "content": prose(4, 4_000)},
                {"role": "user", "content": "short"},
            ],
            "tools": [{"type": "function", "function": {"name": "f", "description": prose(5, 2_000), "parameters": {"type": "object"}}}],
            "metadata": {"session_id": "s"},
        })
    }

    fn big_responses() -> Value {
        json!({
            "model": "gpt-5-codex", "stream": true, "store": false, "prompt_cache_key": "019a1b2c-3d4e-5f60-7182-93a4b5c6d7e8",
            "instructions": prose(10, 12_000),
            "input": [
                {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": prose(11, 2_000)}]},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": prose(12, 1_200)}]},
                {"type": "reasoning", "summary": [], "encrypted_content": prose(13, 3_000)},
                {"type": "function_call", "name": "shell", "arguments": prose(14, 1_000), "call_id": "c"},
                {"type": "function_call_output", "call_id": "c", "output": prose(15, 5_000)},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "next"}]},
            ],
            "tools": [{"type": "function", "name": "shell", "description": prose(16, 3_000), "parameters": {}}],
            "include": ["reasoning.encrypted_content"],
            "reasoning": {"effort": "medium"},
            "max_output_tokens": 5000,
        })
    }

    fn big_gemini() -> Value {
        json!({
            "systemInstruction": {"role": "user", "parts": [{"text": prose(20, 15_000)}]},
            "contents": [
                {"role": "user", "parts": [{"text": prose(21, 2_000)}]},
                {"role": "model", "parts": [{"text": prose(22, 1_500)}, {"functionCall": {"name": "ls", "args": {}}}]},
                {"role": "user", "parts": [{"functionResponse": {"name": "ls", "response": {"output": prose(23, 3_000)}}}]},
                {"role": "user", "parts": [{"text": "and now?"}]},
            ],
            "tools": [{"functionDeclarations": [{"name": "ls", "description": prose(24, 4_000)}]}],
            "generationConfig": {"temperature": 0, "thinkingConfig": {"includeThoughts": true}},
        })
    }

    #[test]
    fn other_apis_first_seen_seen_again_and_grown() {
        let cases = [
            (Endpoint::OpenAiChat, "/v1/chat/completions", big_openai_chat(), "messages"),
            (Endpoint::OpenAiResponses, "/v1/responses", big_responses(), "input"),
            (GEMINI, GEMINI_PATH, big_gemini(), "contents"),
        ];
        for (endpoint, path, value, conversation) in cases {
            let mut seen = SeenParts::default();
            let body = to_vec(&value);
            let cold = read_checked(&mut seen, endpoint, path, &body);
            assert_eq!(uncovered_bytes(&cold), body.len());
            let again = read_checked(&mut seen, endpoint, path, &body);
            assert!(uncovered_bytes(&again) < body.len() / 5, "{path}: {} of {}", uncovered_bytes(&again), body.len());
            assert!(new_texts(&again).iter().all(|t| t.len() < 1_000), "{path}");

            let mut grown = value.clone();
            let turn = if endpoint == GEMINI {
                json!({"role": "user", "parts": [{"text": format!("grown {}", prose(30, 1_200))}]})
            } else {
                json!({"role": "user", "content": format!("grown {}", prose(30, 1_200))})
            };
            grown[conversation].as_array_mut().unwrap().push(turn);
            let grown = read_checked(&mut seen, endpoint, path, &to_vec(&grown));
            assert!(new_texts(&grown).iter().any(|t| t.starts_with("grown")), "{path}");
            assert!(new_texts(&grown).iter().all(|t| t.len() < 2_000), "{path}");
        }
    }

    #[test]
    fn small_and_odd_bodies_read_like_the_full_read() {
        let bodies: &[(Endpoint, &str, &str)] = &[
            (Endpoint::AnthropicMessages, MESSAGES, r#"{"system":"sys","messages":[{"role":"user","content":"hi"}]}"#),
            (Endpoint::AnthropicMessages, MESSAGES, r#" { } "#),
            (Endpoint::AnthropicMessages, MESSAGES, r#"{"messages":[]}"#),
            (Endpoint::AnthropicMessages, MESSAGES, "{\n\t\"model\" : \"m\" ,\r\n \"messages\" : [ 1 , \"bare\" , [ [\"x\"] ] , {\"role\":5,\"content\":\"n\"} ] }"),
            (Endpoint::AnthropicMessages, MESSAGES, r#"{"system":[{"type":"text","text":3},{"type":["text"],"text":"t"},"s",null],"tools":{"odd":1}}"#),
            (Endpoint::AnthropicMessages, MESSAGES, r#"{"system":42,"messages":[{"role":"user","content":7},{"role":"user","content":null}]}"#),
            (Endpoint::AnthropicMessages, MESSAGES, r#"{"messages":[{"role":"user","content":"a \u0066orbidden word"}],"metadata":{"user_id":"{\"session_id\":\"s\"}"}}"#),
            (Endpoint::AnthropicMessages, MESSAGES, r#"{"messages":[{"r\u006fle":"assistant","content":"no"},{"role":"\u0075ser","content":"yes"}]}"#),
            (Endpoint::AnthropicMessages, MESSAGES, r#"{"model":"","stream":false,"max_tokens":1,"metadata":null,"unknown":{"a":[1,2.5e3,-0,true,null]}}"#),
            (Endpoint::AnthropicCountTokens, "/v1/messages/count_tokens", r#"{"messages":[{"role":"user","content":"count me"}]}"#),
            (Endpoint::OpenAiChat, "/v1/chat/completions", r#"{"prompt":["p1",7,"p2"],"messages":[{"role":"developer","content":[{"type":"text","text":"dev"}]}]}"#),
            (Endpoint::OpenAiResponses, "/v1/responses", r#"{"instructions":"be brief","input":[{"role":"user","content":"hello"}],"max_output_tokens":9,"previous_response_id":"r"}"#),
            (Endpoint::OpenAiChat, "/v1/chat/completions", r#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"x"}]}"#),
            (GEMINI, GEMINI_PATH, r#"{"system_instruction":{"parts":[{"text":"snake"}]},"contents":[{"parts":[{"text":"q2"}]}]}"#),
            (GEMINI, GEMINI_PATH, r#"{"systemInstruction":[{"parts":[{"text":"listed"}]}],"contents":[]}"#),
        ];
        for (endpoint, path, body) in bodies {
            let mut seen = SeenParts::default();
            read_checked(&mut seen, *endpoint, path, body.as_bytes());
            read_checked(&mut seen, *endpoint, path, body.as_bytes());
        }
    }

    #[test]
    fn unusual_bodies_are_left_to_the_full_read() {
        let (claude, _) = claude_code_body();
        let claude = String::from_utf8(claude).unwrap();
        let truncated = claude.get(..claude.len() / 2).unwrap();
        let cases: &[(Endpoint, &str)] = &[
            (Endpoint::AnthropicMessages, r#"{"model":"a","model":"b"}"#),
            (Endpoint::AnthropicMessages, r#"{"messages":[],"messages":[]}"#),
            (Endpoint::AnthropicMessages, r#"{"\u006dodel":"a"}"#),
            (Endpoint::AnthropicMessages, "{\"mod\u{e9}l\":\"a\"}"),
            (Endpoint::AnthropicMessages, r#"[{"role":"user","content":"array body"}]"#),
            (Endpoint::AnthropicMessages, r#""a string""#),
            (Endpoint::AnthropicMessages, ""),
            (Endpoint::AnthropicMessages, "  "),
            (Endpoint::AnthropicMessages, "\u{c}{}"),
            (Endpoint::AnthropicMessages, r#"{"model":"a",}"#),
            (Endpoint::AnthropicMessages, r#"{"model":"a"} x"#),
            (Endpoint::AnthropicMessages, r#"{"model":"a"}{}"#),
            (Endpoint::AnthropicMessages, r#"{"messages":[1,]}"#),
            (Endpoint::AnthropicMessages, r#"{"messages":[1 2]}"#),
            (Endpoint::AnthropicMessages, r#"{"messages":"a string"}"#),
            (Endpoint::AnthropicMessages, r#"{"messages":null}"#),
            (Endpoint::AnthropicMessages, r#"{"model":5}"#),
            (Endpoint::AnthropicMessages, r#"{"system":"\ud800"}"#),
            (Endpoint::AnthropicMessages, r#"{"input":[]}"#),
            (Endpoint::AnthropicMessages, r#"{"contents":[]}"#),
            (Endpoint::OpenAiResponses, r#"{"messages":[]}"#),
            (Endpoint::OpenAiResponses, r#"{"input":"a string"}"#),
            (GEMINI, r#"{"messages":[]}"#),
            (Endpoint::AnthropicMessages, truncated),
            (Endpoint::Other, r#"{"model":"a"}"#),
        ];
        for (endpoint, body) in cases {
            let mut seen = SeenParts::default();
            assert!(read(&mut seen, 1, *endpoint, MESSAGES, body.as_bytes()).is_none(), "{body}");
        }
        let mut seen = SeenParts::default();
        assert!(read(&mut seen, 1, Endpoint::AnthropicMessages, MESSAGES, b"{\"system\":\"\xff\"}").is_none());
        assert!(read(&mut seen, 1, Endpoint::AnthropicMessages, MESSAGES, b"{\"x\xff\":1}").is_none());
    }

    #[test]
    fn a_seen_part_must_end_where_the_value_does() {
        let mut seen = SeenParts::default();
        let text = prose(40, 2_000);
        let first = to_vec(&json!({"tools": [{"name": "a", "description": text}]}));
        read_checked(&mut seen, Endpoint::AnthropicMessages, MESSAGES, &first);
        // The remembered tool's bytes, followed by more of the same value.
        let body = String::from_utf8(first.clone()).unwrap().replacen("}]}", "},{\"name\":\"b\"}]}", 1);
        let parts = read_checked(&mut seen, Endpoint::AnthropicMessages, MESSAGES, body.as_bytes());
        assert!(uncovered_bytes(&parts) < 100);
        let longer = String::from_utf8(first).unwrap().replacen("}]}", ",\"extra\":1}]}", 1);
        let parts = read_checked(&mut seen, Endpoint::AnthropicMessages, MESSAGES, longer.as_bytes());
        assert_eq!(uncovered_bytes(&parts), longer.len());
        // The same bytes as another field's value are not that part.
        let as_system = String::from_utf8(to_vec(&json!({"system": [{"name": "a", "description": text}]}))).unwrap();
        let parts = read_checked(&mut seen, Endpoint::AnthropicMessages, MESSAGES, as_system.as_bytes());
        assert_eq!(uncovered_bytes(&parts), as_system.len());
    }

    #[test]
    fn deep_nesting_reads_like_the_full_read() {
        // The full read skips what the guards do not read at any depth
        // (serde's IgnoredAny has no recursion limit); so does this one.
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        let text = serde_json::to_string(&prose(7, 1_500)).unwrap();
        let mut seen = SeenParts::default();
        for n in [120, 127, 128, 500] {
            let body = format!(
                r#"{{"messages":[{},{{"role":"user","content":{text},"x":{}}}],"tools":[{}],"other":{}}}"#,
                deep(n.min(90)),
                deep(n.min(90)),
                deep(n),
                deep(n)
            );
            read_checked(&mut seen, Endpoint::AnthropicMessages, MESSAGES, body.as_bytes());
            let parts = read_checked(&mut seen, Endpoint::AnthropicMessages, MESSAGES, body.as_bytes());
            assert!(parts.texts.iter().all(|t| t.seen));
        }
    }

    #[test]
    fn near_copies_of_seen_parts_cost_no_more_than_a_full_read() {
        let text = prose(3, 1_200);
        // Turns alike up to their last bytes: one key, one bucket.
        let turn = |i: usize| json!({"role": "user", "content": format!("{text} {i:06}")}).to_string();
        let body = |range: Range<usize>| format!(r#"{{"messages":[{}]}}"#, range.map(turn).collect::<Vec<_>>().join(","));
        let mut seen = SeenParts::default();
        read_checked(&mut seen, Endpoint::AnthropicMessages, MESSAGES, body(0..50).as_bytes());
        assert_eq!(seen.len(), MAX_CANDIDATES, "a bucket keeps the newest few");
        // Every turn is compared with every candidate to its last bytes:
        // the compare budget runs out and the body is read in full.
        let copies = body(100..400);
        assert!(read(&mut seen, 1, Endpoint::AnthropicMessages, MESSAGES, copies.as_bytes()).is_none());
        // Turns that differ within their first KiB do not share a bucket.
        let varied = |i: usize| json!({"role": "user", "content": format!("{i:06} {text}")}).to_string();
        let body = format!(r#"{{"messages":[{}]}}"#, (0..50).map(varied).collect::<Vec<_>>().join(","));
        let mut seen = SeenParts::default();
        read_checked(&mut seen, Endpoint::AnthropicMessages, MESSAGES, body.as_bytes());
        assert_eq!(seen.len(), 50);
        let parts = read_checked(&mut seen, Endpoint::AnthropicMessages, MESSAGES, body.as_bytes());
        assert!(uncovered_bytes(&parts) < 100);
    }

    #[test]
    fn a_new_policy_version_forgets_everything() {
        let (body, _) = claude_code_body();
        let mut seen = SeenParts::default();
        read_checked(&mut seen, Endpoint::AnthropicMessages, MESSAGES, &body);
        assert!(!seen.is_empty());
        let parts = read(&mut seen, 2, Endpoint::AnthropicMessages, MESSAGES, &body).unwrap();
        assert_eq!(uncovered_bytes(&parts), body.len());
        assert!(parts.texts.iter().all(|t| !t.seen));
        assert!(seen.is_empty());
    }

    #[test]
    fn findings_are_kept_only_as_checked() {
        let (body, _) = claude_code_body();
        let mut seen = SeenParts::default();
        // Read, but no guard checked anything: remembered, nothing clean.
        let parts = read(&mut seen, 1, Endpoint::AnthropicMessages, MESSAGES, &body).unwrap();
        seen.remember(&parts, &body);
        let parts = read(&mut seen, 1, Endpoint::AnthropicMessages, MESSAGES, &body).unwrap();
        assert_eq!(uncovered_bytes(&parts), body.len());
        assert!(parts.texts.iter().all(|t| !t.seen));
        // Words checked, a needle found in the uncovered bytes but the first.
        let mut parts = read(&mut seen, 1, Endpoint::AnthropicMessages, MESSAGES, &body).unwrap();
        parts.words_checked = true;
        let first = parts.uncovered.get(1).unwrap().clone();
        assert!(!parts.needle_free(&body, |chunk| chunk == body.get(first.clone()).unwrap()));
        seen.remember(&parts, &body);
        let parts = read(&mut seen, 1, Endpoint::AnthropicMessages, MESSAGES, &body).unwrap();
        assert!(parts.texts.iter().filter(|t| t.text.len() > 1_000).all(|t| t.seen));
        assert!(body.len() - uncovered_bytes(&parts) == first.len(), "only the needle-free part is covered");
    }

    #[test]
    fn stays_within_budget_dropping_the_least_recently_used() {
        let mut seen = SeenParts::default();
        let body = |i: usize| to_vec(&json!({"tools": [{"name": i, "description": prose(i, 100_000)}]}));
        let uncovered = |seen: &mut SeenParts, i: usize| {
            let parts = read_checked(seen, Endpoint::AnthropicMessages, MESSAGES, &body(i));
            uncovered_bytes(&parts)
        };
        for i in 0..30 {
            uncovered(&mut seen, i);
            assert!(seen.size() <= BUDGET);
        }
        // About 40 fit: none dropped yet. Using 0 again makes 1 the oldest.
        assert_eq!(seen.len(), 30);
        assert!(uncovered(&mut seen, 0) < 100);
        for i in 30..42 {
            uncovered(&mut seen, i);
            assert!(seen.size() <= BUDGET);
        }
        let kept = seen.len();
        assert!((35..42).contains(&kept), "{kept}");
        let dropped = 42 - kept;
        for i in 1..=dropped {
            assert_eq!(uncovered(&mut seen, i), body(i).len(), "{i} was dropped");
        }
        // Reading them again pushed out the next oldest, not 0.
        assert!(uncovered(&mut seen, 0) < 100);
        assert!(uncovered(&mut seen, 41) < 100);
    }

    /// Bytes changed at random in a remembered body: wherever the walk
    /// does not give up, it agrees with the full reads.
    #[test]
    fn mutated_bodies_agree_or_are_left_to_the_full_read() {
        let cases = [
            (Endpoint::OpenAiChat, "/v1/chat/completions", big_openai_chat()),
            (Endpoint::OpenAiResponses, "/v1/responses", big_responses()),
            (GEMINI, GEMINI_PATH, big_gemini()),
        ];
        for (endpoint, path, value) in cases {
            mutate(endpoint, path, &to_vec(&value));
        }
    }

    fn mutate(endpoint: Endpoint, path: &str, body: &[u8]) {
        let mut seen = SeenParts::default();
        read_checked(&mut seen, endpoint, path, body);
        let bytes = b"\"\\,]}{[ x\xff0:n-";
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let (mut kept, mut gave_up) = (0, 0);
        for _ in 0..800 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut mutated = body.to_vec();
            let at = (x >> 8) as usize % mutated.len();
            let with = bytes[(x >> 40) as usize % bytes.len()];
            if x.is_multiple_of(5) {
                mutated.truncate(at);
            } else if x % 5 == 1 {
                mutated.insert(at, with);
            } else {
                mutated[at] = with;
            }
            let Some(parts) = read(&mut seen, 1, endpoint, path, &mutated) else {
                gave_up += 1;
                continue;
            };
            kept += 1;
            let shown = String::from_utf8_lossy(&mutated);
            assert_eq!(parts.info, inspect(endpoint, path, &mutated).unwrap(), "{shown}");
            let texts: Vec<&str> = parts.texts.iter().map(|t| &*t.text).collect();
            assert_eq!(texts, user_texts(endpoint, &mutated).unwrap(), "{shown}");
            assert!(serde_json::from_slice::<IgnoredAny>(&mutated).is_ok(), "{shown}");
            let turns = parts.first_turns(&mutated).unwrap();
            let via_parts = turns.and_then(|t| fallback_session_id_of_turns(9, &t));
            assert_eq!(via_parts, fallback_session_id(endpoint, 9, &mutated), "{shown}");
        }
        assert!(kept > 100 && gave_up > 100, "{path}: {kept} kept, {gave_up} gave up");
    }

    #[test]
    fn bytes_compare_in_words() {
        let a: Vec<u8> = (0..200u8).collect();
        for len in [0, 1, 7, 8, 31, 32, 33, 64, 100, 200] {
            let x = a.get(..len).unwrap();
            assert!(same_bytes(x, x));
            for i in 0..len {
                let mut y = x.to_vec();
                y[i] ^= 1;
                assert!(!same_bytes(x, &y), "{len} {i}");
            }
        }
        assert!(!same_bytes(b"ab", b"abc"));
        assert_eq!(nesting(br#"{"a":[{"b":"[[[{"}]}"#), 3);
    }

    /// Prints the cost of the body-reading guards' work on a 115 KB Claude
    /// Code request, read in full and with seen parts (cold, seen again,
    /// seen with one new turn), against 1,000 contains words and a text
    /// replace filter (none matching). Run with `cargo test --release -p
    /// hubgate-core -- --ignored --nocapture seen_parts_cost`.
    #[test]
    #[ignore]
    fn seen_parts_cost() {
        use crate::guards::request_filters::{Binding, RequestFilters};
        use crate::guards::sensitive_words::SensitiveWords;
        use crate::headers::Headers;
        use hubgate_wire::{FilterAction, FilterBinding, FilterScope, RequestFilter, SensitiveWord, TextMatch, WordMatch};
        use std::borrow::Cow;
        use std::time::Instant;

        let token = |seed: u64| crate::body_text::samples::token(seed, 6 + (seed % 9) as usize);
        let list: Vec<SensitiveWord> =
            (0..1000).map(|i| SensitiveWord { id: i, word: token(i as u64), match_type: WordMatch::Contains }).collect();
        let (words, _) = SensitiveWords::compile(&list);
        let filter = RequestFilter {
            id: 1,
            name: "f".into(),
            scope: FilterScope::Body,
            action: FilterAction::TextReplace,
            match_type: Some(TextMatch::Contains),
            target: "internal.example.com".into(),
            replacement: Some(json!("proxy.example.com")),
            priority: 0,
            binding: FilterBinding::Global,
            provider_ids: vec![],
            group_tags: vec![],
        };
        let (filters, _) = RequestFilters::compile(&[filter]);
        let headers = Headers::default();
        let endpoint = Endpoint::AnthropicMessages;

        let (body, _) = claude_code_body();
        let base: Value = serde_json::from_slice(&body).unwrap();
        // Next requests: the body and one more exchange, different each time.
        let next: Vec<Vec<u8>> = (0..400)
            .map(|i| {
                let mut v = base.clone();
                let messages = v["messages"].as_array_mut().unwrap();
                messages.push(json!({"role": "assistant", "content": [{"type": "text", "text": format!("Done {i}.")}]}));
                messages.push(json!({"role": "user", "content": [{"type": "text", "text": format!("Next step {i}: {}", prose(i, 300))}]}));
                to_vec(&v)
            })
            .collect();

        let full = |body: &[u8]| {
            assert!(inspect(endpoint, MESSAGES, body).is_ok());
            let texts = user_texts(endpoint, body).unwrap();
            assert!(words.find(&texts).is_none());
            assert!(filters.apply(Binding::Global, &headers, Some(body)).is_empty());
        };
        let with_parts = |seen: &mut SeenParts, body: &[u8]| {
            let mut parts = read(seen, 1, endpoint, MESSAGES, body).unwrap();
            let texts: Vec<Cow<str>> = parts.new_texts().map(Cow::Borrowed).collect();
            assert!(words.find(&texts).is_none());
            parts.words_checked = true;
            assert!(parts.needle_free(body, |chunk| filters.needle_free(chunk)));
            assert!(filters.apply(Binding::Global, &headers, None).is_empty());
            seen.remember(&parts, body);
        };
        // The machine is shared: the best of 20 batches is the least noisy.
        let time = |what: &str, f: &mut dyn FnMut(usize)| {
            let mut i = 0;
            let best = (0..20)
                .map(|_| {
                    let started = Instant::now();
                    for _ in 0..20 {
                        f(i);
                        i += 1;
                    }
                    started.elapsed().as_secs_f64() * 1e6 / 20.0
                })
                .fold(f64::INFINITY, f64::min);
            println!("{what}: {best:.1} µs");
        };
        println!("body {} bytes", body.len());
        time("full read: inspect + user_texts + words + filters", &mut |_| full(&body));
        time("  inspect alone", &mut |_| assert!(inspect(endpoint, MESSAGES, &body).is_ok()));
        time("seen parts, cold (empty store)", &mut |_| with_parts(&mut SeenParts::default(), &body));
        let mut seen = SeenParts::default();
        with_parts(&mut seen, &body);
        time("seen parts, same body seen again", &mut |_| with_parts(&mut seen, &body));
        time("  read alone, seen again", &mut |_| assert!(read(&mut seen, 1, endpoint, MESSAGES, &body).is_some()));
        time("seen parts, one new exchange", &mut |i| with_parts(&mut seen, next.get(i).unwrap()));
        println!("store: {} parts, {} KiB", seen.len(), seen.size() / 1024);
    }
}
