//! Splits a stream of JSON into finding-sized pieces without loading the stream whole.
//!
//! Accepted at the top level, in any sequence: a finding object (so NDJSON works), an array of
//! findings, and an envelope `{"Findings": [...]}`. Only structure is tracked here (strings,
//! nesting, the `Findings` key); each piece is then parsed by serde on its own, so memory is
//! bounded by the largest single finding, not by the file.

use std::io::Read;

/// How much is read from the file at a time.
const CHUNK: usize = 64 * 1024;

/// One piece: the bytes of one array element or one top-level object.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Byte offset of the piece in the stream.
    pub offset: u64,
    /// 1-based line where the piece starts.
    pub line: u64,
    /// The JSON text of the piece.
    pub bytes: &'a [u8],
}

/// Where in the stream a structural problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// Byte offset.
    pub offset: u64,
    /// 1-based line.
    pub line: u64,
    /// 1-based column (in bytes).
    pub column: u64,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}, column {} (byte {})", self.line, self.column, self.offset)
    }
}

/// The stream is not a sequence of JSON objects/arrays, or a piece is too big to hold.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// A byte that cannot start or continue the structure here.
    #[error("at {at}: unexpected {found}; {expected}")]
    Unexpected {
        /// Where.
        at: Position,
        /// What was found, printable.
        found: String,
        /// What would have been valid.
        expected: &'static str,
    },
    /// The stream ended inside a value.
    #[error("the file ends inside the JSON value that starts at {start} (truncated?)")]
    Truncated {
        /// Where the unfinished value starts.
        start: Position,
    },
    /// A single piece is over the read limit.
    #[error("the JSON value that starts at {start} is larger than {limit} bytes; not read")]
    TooLarge {
        /// Where it starts.
        start: Position,
        /// The limit.
        limit: usize,
    },
    /// Reading the file failed.
    #[error("read error: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Between top-level values.
    Top,
    /// Inside an array whose elements are findings, at `depth`.
    Findings { depth: u32, envelope: bool, need_comma: bool },
    /// Inside a top-level object not yet known to be an envelope.
    Object { expect_key: bool, findings_key: bool },
    /// Inside an envelope after its `Findings` array: skip to the closing brace.
    EnvelopeRest,
}

#[derive(Debug, Clone, Copy)]
enum Piece {
    /// An object or array element, done when depth returns to `depth`.
    Nested { depth: u32 },
    /// A string element, done at its closing quote.
    Str,
    /// A number/true/false/null element, done at a delimiter.
    Scalar,
}

/// Incremental splitter over a reader; see the module docs.
pub struct Framer<R> {
    reader: R,
    buf: Vec<u8>,
    /// Next byte to scan in `buf`.
    pos: usize,
    /// Stream offset of `buf[0]`.
    base: u64,
    line: u64,
    line_start: u64,
    depth: u32,
    in_str: bool,
    escaped: bool,
    mode: Mode,
    /// Start (index in `buf`) of the piece being scanned, and its line.
    start: Option<(usize, u64, Piece)>,
    /// Start of the current top-level object (buffered until it is known to be a finding).
    key_start: usize,
    /// Range of the last completed key at depth 1 of a top-level object.
    last_key: (usize, usize),
    max_piece: usize,
    eof: bool,
}

impl<R: Read> Framer<R> {
    /// Frames `reader`; pieces larger than `max_piece` bytes are an error.
    pub fn new(reader: R, max_piece: usize) -> Self {
        Self {
            reader,
            buf: Vec::with_capacity(CHUNK),
            pos: 0,
            base: 0,
            line: 1,
            line_start: 0,
            depth: 0,
            in_str: false,
            escaped: false,
            mode: Mode::Top,
            start: None,
            key_start: 0,
            last_key: (0, 0),
            max_piece,
            eof: false,
        }
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// The next piece, `None` at a clean end of the stream.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, FrameError> {
        loop {
            if self.pos == self.buf.len() && (self.eof || !self.fill()?) {
                return self.at_end().map(|()| None);
            }
            if self.in_str && !self.escaped && self.skip_string_body() {
                continue;
            }
            if let Some((from, to, line)) = self.step()? {
                let offset = self.base + from as u64;
                return Ok(Some(Frame { offset, line, bytes: &self.buf[from..to] }));
            }
        }
    }

    /// Inside a string, jumps to the next quote or backslash (strings are most of a finding's
    /// bytes; scanning them one by one was the framer's main cost). True if it reached the end
    /// of the buffer without finding one.
    fn skip_string_body(&mut self) -> bool {
        let rest = &self.buf[self.pos..];
        let skip = memchr::memchr2(b'"', b'\\', rest).unwrap_or(rest.len());
        let skipped = &rest[..skip];
        if let Some(last) = memchr::memrchr(b'\n', skipped) {
            // A raw newline in a string is invalid JSON, but positions in errors should stay right.
            self.line += memchr::memchr_iter(b'\n', skipped).count() as u64;
            self.line_start = self.base + (self.pos + last + 1) as u64;
        }
        self.pos += skip;
        self.pos == self.buf.len()
    }

    fn position(&self, index: usize) -> Position {
        let offset = self.base + index as u64;
        Position { offset, line: self.line, column: offset.saturating_sub(self.line_start) + 1 }
    }

    fn start_position(&self, index: usize, line: u64) -> Position {
        // The column of an earlier line is not tracked; give the line and the byte offset.
        let offset = self.base + index as u64;
        let column = if line == self.line { offset.saturating_sub(self.line_start) + 1 } else { 1 };
        Position { offset, line, column }
    }

    /// Drops what is no longer needed and reads more. False at end of stream.
    fn fill(&mut self) -> Result<bool, FrameError> {
        let keep_from = self.start.map_or(self.pos, |(s, _, _)| s);
        if keep_from > 0 {
            self.buf.drain(..keep_from);
            self.base += keep_from as u64;
            self.pos -= keep_from;
            if let Some((s, line, piece)) = self.start {
                self.start = Some((s - keep_from, line, piece));
            }
            self.key_start = self.key_start.saturating_sub(keep_from);
            self.last_key =
                (self.last_key.0.saturating_sub(keep_from), self.last_key.1.saturating_sub(keep_from));
        }
        let old = self.buf.len();
        self.buf.resize(old + CHUNK, 0);
        let n = loop {
            match self.reader.read(&mut self.buf[old..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.buf.truncate(old);
                    return Err(e.into());
                }
            }
        };
        self.buf.truncate(old + n);
        if n == 0 {
            self.eof = true;
        }
        Ok(n > 0)
    }

    fn at_end(&self) -> Result<(), FrameError> {
        match (self.mode, self.start) {
            (Mode::Top, None) if !self.in_str => Ok(()),
            (_, Some((s, line, _))) => Err(FrameError::Truncated { start: self.start_position(s, line) }),
            _ => Err(FrameError::Truncated { start: self.position(self.pos) }),
        }
    }

    /// Scans one byte; returns a finished piece as (from, to, line).
    fn step(&mut self) -> Result<Option<(usize, usize, u64)>, FrameError> {
        let i = self.pos;
        let b = self.buf[i];
        if let Some((s, line, piece)) = self.start {
            if i - s > self.max_piece {
                return Err(FrameError::TooLarge {
                    start: self.start_position(s, line),
                    limit: self.max_piece,
                });
            }
            // A scalar element ends before the first delimiter, which is then scanned as usual.
            if matches!(piece, Piece::Scalar) && (matches!(b, b',' | b']' | b'}') || b.is_ascii_whitespace())
            {
                self.start = None;
                if let Mode::Findings { depth, envelope, .. } = self.mode {
                    self.mode = Mode::Findings { depth, envelope, need_comma: true };
                }
                return Ok(Some((s, i, line)));
            }
        }
        self.pos += 1;
        if b == b'\n' {
            self.line += 1;
            self.line_start = self.base + self.pos as u64;
        }
        if self.in_str {
            if self.escaped {
                self.escaped = false;
            } else if b == b'\\' {
                self.escaped = true;
            } else if b == b'"' {
                self.in_str = false;
                return Ok(self.string_closed(i));
            }
            return Ok(None);
        }
        if matches!(self.start, Some((_, _, Piece::Scalar))) {
            return Ok(None);
        }
        if b.is_ascii_whitespace() {
            return Ok(None);
        }
        match self.mode {
            Mode::Top => self.top(i, b),
            Mode::Findings { depth, envelope, need_comma } => {
                self.in_findings(i, b, depth, envelope, need_comma)
            }
            Mode::Object { expect_key, findings_key } => self.in_object(i, b, expect_key, findings_key),
            Mode::EnvelopeRest => {
                self.track_depth(i, b)?;
                if self.depth == 0 {
                    self.mode = Mode::Top;
                }
                Ok(None)
            }
        }
    }

    fn unexpected<T>(&self, i: usize, b: u8, expected: &'static str) -> Result<T, FrameError> {
        let found = if b.is_ascii_graphic() { format!("'{}'", b as char) } else { format!("byte 0x{b:02x}") };
        Err(FrameError::Unexpected { at: self.position(i), found, expected })
    }

    fn track_depth(&mut self, i: usize, b: u8) -> Result<(), FrameError> {
        match b {
            b'"' => self.in_str = true,
            b'{' | b'[' => self.depth += 1,
            b'}' | b']' => {
                if self.depth == 0 {
                    return self.unexpected(i, b, "nothing is open to close");
                }
                self.depth -= 1;
            }
            _ => {}
        }
        Ok(())
    }

    fn top(&mut self, i: usize, b: u8) -> Result<Option<(usize, usize, u64)>, FrameError> {
        match b {
            b'[' => {
                self.depth = 1;
                self.mode = Mode::Findings { depth: 1, envelope: false, need_comma: false };
            }
            b'{' => {
                self.depth = 1;
                self.start = Some((i, self.line, Piece::Nested { depth: 0 }));
                self.mode = Mode::Object { expect_key: true, findings_key: false };
            }
            _ => return self.unexpected(i, b, "expected a JSON object or array at the top level"),
        }
        Ok(None)
    }

    fn in_findings(
        &mut self,
        i: usize,
        b: u8,
        depth: u32,
        envelope: bool,
        need_comma: bool,
    ) -> Result<Option<(usize, usize, u64)>, FrameError> {
        if let Some((s, line, Piece::Nested { depth: d })) = self.start {
            self.track_depth(i, b)?;
            if self.depth == d {
                self.start = None;
                self.mode = Mode::Findings { depth, envelope, need_comma: true };
                return Ok(Some((s, i + 1, line)));
            }
            return Ok(None);
        }
        match b {
            b']' => {
                self.depth = depth - 1;
                self.mode = if envelope { Mode::EnvelopeRest } else { Mode::Top };
            }
            b',' if need_comma => self.mode = Mode::Findings { depth, envelope, need_comma: false },
            _ if need_comma => {
                return self.unexpected(i, b, "expected ',' or ']' after an array element");
            }
            b',' => return self.unexpected(i, b, "expected an array element"),
            b'{' | b'[' => {
                self.start = Some((i, self.line, Piece::Nested { depth }));
                self.depth += 1;
            }
            b'"' => {
                self.start = Some((i, self.line, Piece::Str));
                self.in_str = true;
            }
            b'}' | b':' => return self.unexpected(i, b, "expected an array element"),
            _ => self.start = Some((i, self.line, Piece::Scalar)),
        }
        Ok(None)
    }

    fn string_closed(&mut self, i: usize) -> Option<(usize, usize, u64)> {
        match (self.mode, self.start) {
            (Mode::Findings { depth, envelope, .. }, Some((s, line, Piece::Str))) => {
                self.start = None;
                self.mode = Mode::Findings { depth, envelope, need_comma: true };
                Some((s, i + 1, line))
            }
            (Mode::Object { expect_key: true, .. }, _) if self.depth == 1 => {
                self.last_key = (self.key_start, i + 1);
                None
            }
            _ => None,
        }
    }

    fn in_object(
        &mut self,
        i: usize,
        b: u8,
        expect_key: bool,
        findings_key: bool,
    ) -> Result<Option<(usize, usize, u64)>, FrameError> {
        if self.depth == 1 {
            match b {
                b'"' if expect_key => {
                    self.key_start = i;
                    self.in_str = true;
                    return Ok(None);
                }
                b':' if expect_key => {
                    let key = &self.buf[self.last_key.0..self.last_key.1];
                    self.mode = Mode::Object {
                        expect_key: false,
                        findings_key: key == b"\"Findings\"" || key == b"\"findings\"",
                    };
                    return Ok(None);
                }
                b'[' if findings_key => {
                    // An envelope: stream its array and forget the buffered prefix.
                    self.start = None;
                    self.depth = 2;
                    self.mode = Mode::Findings { depth: 2, envelope: true, need_comma: false };
                    return Ok(None);
                }
                b',' => {
                    self.mode = Mode::Object { expect_key: true, findings_key: false };
                    return Ok(None);
                }
                _ => {}
            }
        }
        self.track_depth(i, b)?;
        if self.depth == 0 {
            let (s, line, _) = self.start.take().expect("an object piece is open");
            self.mode = Mode::Top;
            return Ok(Some((s, i + 1, line)));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(input: &str) -> Result<Vec<String>, FrameError> {
        frames_limited(input, 1 << 20)
    }

    fn frames_limited(input: &str, limit: usize) -> Result<Vec<String>, FrameError> {
        let mut f = Framer::new(input.as_bytes(), limit);
        let mut out = Vec::new();
        while let Some(frame) = f.next_frame()? {
            out.push(String::from_utf8(frame.bytes.to_vec()).unwrap());
        }
        Ok(out)
    }

    #[test]
    fn single_object_is_one_piece() {
        assert_eq!(frames(r#" {"Id":"a","X":[1,{"y":"}"}]} "#).unwrap(), [r#"{"Id":"a","X":[1,{"y":"}"}]}"#]);
    }

    #[test]
    fn array_elements_are_pieces() {
        let got = frames(r#"[ {"Id":"a"} , {"Id":"b","T":["]"]}, 7, "s\"x", null ]"#).unwrap();
        assert_eq!(got, [r#"{"Id":"a"}"#, r#"{"Id":"b","T":["]"]}"#, "7", r#""s\"x""#, "null"]);
    }

    #[test]
    fn envelope_streams_its_findings_and_ignores_other_keys() {
        let got = frames(r#"{"Other":{"Findings":[1]},"Findings":[{"Id":"a"},{"Id":"b"}],"Tail":[{"c":1}]}"#)
            .unwrap();
        assert_eq!(got, [r#"{"Id":"a"}"#, r#"{"Id":"b"}"#]);
    }

    #[test]
    fn ndjson_lines_are_pieces() {
        let got = frames("{\"Id\":\"a\"}\n{\"Id\":\"b\"}\n\n{\"Id\":\"c\"}").unwrap();
        assert_eq!(got, [r#"{"Id":"a"}"#, r#"{"Id":"b"}"#, r#"{"Id":"c"}"#]);
    }

    #[test]
    fn findings_key_inside_a_value_is_not_an_envelope() {
        let got = frames(r#"{"ProductFields":{"Findings":"x"},"Id":"a"}"#).unwrap();
        assert_eq!(got.len(), 1);
    }

    #[test]
    fn empty_inputs_give_nothing() {
        assert!(frames("").unwrap().is_empty());
        assert!(frames(" \n[]\n{\"Findings\":[]}").unwrap().is_empty());
    }

    #[test]
    fn truncated_input_names_where_the_value_starts() {
        let err = frames("{\"Id\":\"a\"}\n[{\"Id\":\"b\"},\n {\"Id\":").unwrap_err();
        match err {
            FrameError::Truncated { start } => assert_eq!((start.line, start.offset), (3, 25)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(frames("[{\"a\":\"unterminated").unwrap_err(), FrameError::Truncated { .. }));
        assert!(matches!(frames("[").unwrap_err(), FrameError::Truncated { .. }));
    }

    #[test]
    fn garbage_is_reported_with_position() {
        let err = frames("{\"Id\":1}\nhello").unwrap_err().to_string();
        assert_eq!(
            err,
            "at line 2, column 1 (byte 9): unexpected 'h'; expected a JSON object or array at the top level"
        );
        assert!(frames("[{\"a\":1} {\"b\":2}]").unwrap_err().to_string().contains("expected ',' or ']'"));
        assert!(frames("[,]").is_err());
        assert!(frames("\u{1}").unwrap_err().to_string().contains("byte 0x01"));
    }

    #[test]
    fn oversized_piece_is_refused_without_reading_it_whole() {
        let big = format!("[{{\"a\":\"{}\"}}]", "x".repeat(1000));
        assert!(matches!(frames_limited(&big, 100).unwrap_err(), FrameError::TooLarge { limit: 100, .. }));
        assert_eq!(frames_limited(&big, 2000).unwrap().len(), 1);
    }

    #[test]
    fn deep_nesting_is_only_counted() {
        let deep = format!("[{}{}]", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(frames(&deep).unwrap().len(), 1);
    }

    #[test]
    fn pieces_spanning_chunks_are_whole() {
        let one = format!("{{\"Id\":\"{}\"}}", "y".repeat(CHUNK));
        let input = format!("[{one},{one}]");
        assert_eq!(frames(&input).unwrap(), [one.clone(), one]);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn finding() -> impl Strategy<Value = serde_json::Value> {
            let leaf = prop_oneof![
                any::<i64>().prop_map(serde_json::Value::from),
                ".{0,12}".prop_map(serde_json::Value::from),
                Just(serde_json::Value::Null),
            ];
            let value = leaf.prop_recursive(3, 24, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                    prop::collection::btree_map("[a-zA-Z\\]\\[{}\"]{1,6}", inner, 0..4)
                        .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
                ]
            });
            prop::collection::btree_map("[A-Za-z]{1,8}", value, 0..5)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect()))
        }

        proptest! {
            #[test]
            fn every_shape_yields_exactly_the_findings(items in prop::collection::vec(finding(), 0..12), shape in 0..3u8) {
                let texts: Vec<String> = items.iter().map(|v| v.to_string()).collect();
                let input = match shape {
                    0 => format!("[{}]", texts.join(",\n")),
                    1 => format!("{{\"Findings\": [{}]}}", texts.join(", ")),
                    _ => texts.join("\n"),
                };
                let got = frames(&input).unwrap();
                let parsed: Vec<serde_json::Value> = got.iter().map(|t| serde_json::from_str(t).unwrap()).collect();
                prop_assert_eq!(parsed, items);
            }

            #[test]
            fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
                let mut f = Framer::new(&bytes[..], 64);
                while let Ok(Some(_)) = f.next_frame() {}
            }
        }
    }
}
