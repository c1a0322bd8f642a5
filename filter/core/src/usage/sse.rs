//! A minimal Server-Sent Events scanner. Chunks may split lines, events and
//! even UTF-8 sequences anywhere; incomplete lines are carried over.

/// Lines longer than this are dropped rather than held without bound.
const MAX_LINE: usize = 4 * 1024 * 1024;

/// Sums up something of a data line (e.g. the output characters of a delta).
pub type Measure = fn(&[u8]) -> u64;

#[derive(Default)]
pub struct SseScanner {
    carry: Vec<u8>,
    event: String,
    data: Vec<u8>,
    has_data: bool,
    /// The previous chunk ended in `\r`; a leading `\n` belongs to it.
    after_cr: bool,
    oversized: bool,
    /// Only these named events are collected (unnamed ones always are);
    /// the data of others (text deltas, pings) is not even copied.
    only: Option<&'static [&'static str]>,
    skipping: bool,
    /// A skipped event whose data lines are measured in place (never
    /// copied): its name and the measure.
    measure: Option<(&'static str, Measure)>,
    measuring: bool,
    /// The sum of the measures so far.
    pub measured: u64,
}

impl SseScanner {
    /// A scanner that collects only the named events in `events`.
    pub fn only(events: &'static [&'static str]) -> SseScanner {
        SseScanner { only: Some(events), ..SseScanner::default() }
    }

    /// Also sums `measure(data line)` over the data lines of the skipped
    /// event `name` (into [`SseScanner::measured`]).
    pub fn measuring(mut self, name: &'static str, measure: Measure) -> SseScanner {
        self.measure = Some((name, measure));
        self
    }

    /// Feeds a chunk; `on_event(event_name, data)` runs for every complete
    /// event (event name empty when none was given).
    pub fn feed(&mut self, mut chunk: &[u8], mut on_event: impl FnMut(&str, &[u8])) {
        if chunk.is_empty() {
            return;
        }
        if self.after_cr {
            self.after_cr = false;
            if let Some(rest) = chunk.strip_prefix(b"\n") {
                chunk = rest;
            }
        }
        while let Some(pos) = chunk.iter().position(|&b| b == b'\n' || b == b'\r') {
            let (line, rest) = chunk.split_at(pos);
            let is_cr = rest.first() == Some(&b'\r');
            let mut rest = rest.get(1..).unwrap_or_default();
            if is_cr {
                match rest.first() {
                    Some(b'\n') => rest = rest.get(1..).unwrap_or_default(),
                    None => self.after_cr = true,
                    _ => {}
                }
            }
            if std::mem::take(&mut self.oversized) {
                // The end of a line that was too long: drop it whole.
                self.carry.clear();
            } else if self.carry.is_empty() {
                self.line(line, &mut on_event);
            } else {
                let mut full = std::mem::take(&mut self.carry);
                full.extend_from_slice(line);
                self.line(&full, &mut on_event);
            }
            chunk = rest;
        }
        if self.carry.len() + chunk.len() > MAX_LINE {
            self.oversized = true;
            self.carry.clear();
        } else if !self.oversized {
            self.carry.extend_from_slice(chunk);
        }
    }

    /// Ends the stream: a final event without its blank line still counts.
    pub fn finish(&mut self, mut on_event: impl FnMut(&str, &[u8])) {
        if !self.carry.is_empty() && !self.oversized {
            let last = std::mem::take(&mut self.carry);
            self.line(&last, &mut on_event);
        }
        self.dispatch(&mut on_event);
    }

    fn line(&mut self, line: &[u8], on_event: &mut impl FnMut(&str, &[u8])) {
        if line.is_empty() {
            self.dispatch(on_event);
            return;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let (f, v) = line.split_at(i);
                let v = v.get(1..).unwrap_or_default();
                (f, v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"event" => {
                self.event = String::from_utf8_lossy(value).into_owned();
                self.skipping = self.only.is_some_and(|only| !only.contains(&self.event.as_str()));
                self.measuring = self.skipping && self.measure.is_some_and(|(name, _)| name == self.event);
            }
            b"data" if self.skipping => {
                if let Some((_, measure)) = self.measure.filter(|_| self.measuring) {
                    self.measured = self.measured.saturating_add(measure(value));
                }
            }
            b"data" => {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, on_event: &mut impl FnMut(&str, &[u8])) {
        if self.has_data {
            on_event(&self.event, &self.data);
        }
        self.event.clear();
        self.data.clear();
        self.has_data = false;
        self.skipping = false;
        self.measuring = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(chunks: &[&[u8]]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut s = SseScanner::default();
        for c in chunks {
            s.feed(c, |e, d| out.push((e.to_string(), String::from_utf8_lossy(d).into_owned())));
        }
        s.finish(|e, d| out.push((e.to_string(), String::from_utf8_lossy(d).into_owned())));
        out
    }

    const STREAM: &[u8] = b"event: a\ndata: {\"x\":1}\n\n: comment\r\nevent: b\r\ndata: line1\r\ndata:line2\r\n\r\ndata: tail";

    #[test]
    fn only_the_named_events_are_collected() {
        let mut out = Vec::new();
        let mut s = SseScanner::only(&["b"]);
        s.feed(STREAM, |e, d| out.push((e.to_string(), String::from_utf8_lossy(d).into_owned())));
        s.finish(|e, d| out.push((e.to_string(), String::from_utf8_lossy(d).into_owned())));
        assert_eq!(out, vec![("b".to_string(), "line1\nline2".to_string()), (String::new(), "tail".to_string())]);
    }

    #[test]
    fn skipped_events_can_be_measured_in_place() {
        let stream = b"event: a\ndata: xy\n\nevent: b\ndata: 12345\ndata: 678\n\nevent: b\ndata: 9\n\ndata: zz\n\n";
        for cut in 0..=stream.len() {
            let mut s = SseScanner::only(&["a"]).measuring("b", |d| d.len() as u64);
            let mut out = Vec::new();
            s.feed(&stream[..cut], |e, _| out.push(e.to_string()));
            s.feed(&stream[cut..], |e, _| out.push(e.to_string()));
            s.finish(|e, _| out.push(e.to_string()));
            assert_eq!(s.measured, 9, "cut at {cut}");
            assert_eq!(out, vec!["a".to_string(), String::new()]);
        }
    }

    #[test]
    fn parses_events_with_any_line_ending() {
        assert_eq!(
            events(&[STREAM]),
            vec![
                ("a".into(), "{\"x\":1}".into()),
                ("b".into(), "line1\nline2".into()),
                ("".into(), "tail".into()),
            ]
        );
    }

    #[test]
    fn an_oversized_line_is_dropped_and_scanning_goes_on() {
        let huge = vec![b'x'; MAX_LINE + 10];
        let mut s = SseScanner::default();
        let mut out = Vec::new();
        let mut collect = |e: &str, d: &[u8]| out.push((e.to_string(), String::from_utf8_lossy(d).into_owned()));
        s.feed(b"data: ", &mut collect);
        s.feed(&huge, &mut collect);
        s.feed(b"tail\n\nevent: ok\nda", &mut collect);
        s.feed(b"ta: 1\n\n", &mut collect);
        s.feed(b"", &mut collect);
        assert_eq!(out, vec![("ok".to_string(), "1".to_string())]);
    }

    #[test]
    fn same_events_when_split_at_every_byte_boundary() {
        let whole = events(&[STREAM]);
        for cut in 0..=STREAM.len() {
            assert_eq!(events(&[&STREAM[..cut], &STREAM[cut..]]), whole, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = STREAM.chunks(1).collect();
        assert_eq!(events(&bytes), whole);
    }
}
