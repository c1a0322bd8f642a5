//! The SSE scanner on its own: `hubgate_core::usage::sse::SseScanner` fed the
//! stream in arbitrary chunks must see the same events as when fed it whole,
//! and as a plain reference parser that splits the whole text into lines
//! (`\r\n`, `\r` or `\n`) — chunks may split lines, CRLF pairs and UTF-8.
//! The events are also run through the Anthropic stream state machine.
//!
//! Input: a cut-count byte (low 4 bits), that many u16 LE cut points, then
//! the stream.
#![no_main]

use hubgate_core::usage::anthropic::StreamState;
use hubgate_core::usage::sse::SseScanner;
use hubgate_fuzz::{check, chunks, lossy, read_cuts, Input};
use libfuzzer_sys::fuzz_target;

type Events = Vec<(String, Vec<u8>)>;

fn scan(pieces: &[&[u8]]) -> Events {
    let mut out = Events::new();
    let mut scanner = SseScanner::default();
    for piece in pieces {
        scanner.feed(piece, |e, d| out.push((e.to_string(), d.to_vec())));
    }
    scanner.finish(|e, d| out.push((e.to_string(), d.to_vec())));
    out
}

/// What the scanner should produce, computed on the whole stream at once.
fn reference(stream: &[u8]) -> Events {
    let mut lines: Vec<&[u8]> = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while let Some(&b) = stream.get(i) {
        if b == b'\n' || b == b'\r' {
            lines.push(stream.get(start..i).unwrap_or_default());
            i += if b == b'\r' && stream.get(i + 1) == Some(&b'\n') { 2 } else { 1 };
            start = i;
        } else {
            i += 1;
        }
    }
    let tail = stream.get(start..).unwrap_or_default();
    if !tail.is_empty() {
        lines.push(tail);
    }
    let mut out = Events::new();
    let (mut event, mut data, mut has_data) = (String::new(), Vec::new(), false);
    let mut dispatch = |event: &mut String, data: &mut Vec<u8>, has_data: &mut bool| {
        if *has_data {
            out.push((event.clone(), data.clone()));
        }
        event.clear();
        data.clear();
        *has_data = false;
    };
    for line in lines {
        if line.is_empty() {
            dispatch(&mut event, &mut data, &mut has_data);
            continue;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = line.get(i + 1..).unwrap_or_default();
                (line.get(..i).unwrap_or_default(), v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        if field == b"event" {
            event = lossy(value);
        } else if field == b"data" {
            if has_data {
                data.push(b'\n');
            }
            data.extend_from_slice(value);
            has_data = true;
        }
    }
    dispatch(&mut event, &mut data, &mut has_data);
    out
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let cuts = read_cuts(&mut input);
    let stream = input.rest();
    let whole = scan(&[stream]);
    let pieces = chunks(stream, &cuts);
    let split = scan(&pieces);
    let show = |e: &Events| e.iter().map(|(n, d)| (n.clone(), lossy(d))).collect::<Vec<_>>();
    check(whole == split, "SSE events depend on chunk boundaries", &(pieces.iter().map(|p| lossy(p)).collect::<Vec<_>>(), show(&whole), show(&split)));
    let expected = reference(stream);
    check(whole == expected, "SSE events differ from the reference parser", &(lossy(stream), show(&whole), show(&expected)));

    let mut state = StreamState::default();
    for (event, data) in &whole {
        state.on_event(event, data);
    }
});
