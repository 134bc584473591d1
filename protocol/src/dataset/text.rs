//! The text formats' scanners: JSON arrays (one element at a time) and CSV (one record at a time),
//! both with bounded memory: an element or record longer than the limit fails before it is buffered
//! whole.

use std::io::{self, BufRead};

/// What reading one unit found.
pub(super) enum Unit {
    /// One unit is in the buffer.
    Got,
    /// End of input.
    End,
    /// The unit is longer than the limit.
    TooLong,
}

/// Why a text source is malformed (the caller adds the location).
pub(super) type Malformed = String;

fn fill<R: BufRead>(reader: &mut R) -> io::Result<&[u8]> {
    while let Err(e) = reader.fill_buf() {
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    reader.fill_buf()
}

/// Skip a UTF-8 byte-order mark, if the input starts with one (checked in the first buffer).
pub(super) fn skip_bom<R: BufRead>(reader: &mut R) -> io::Result<()> {
    if fill(reader)?.starts_with(b"\xEF\xBB\xBF") {
        reader.consume(3);
    }
    Ok(())
}

/// Skip whitespace (and a UTF-8 byte-order mark when `bom`); the next byte, not consumed.
pub(super) fn peek_non_ws<R: BufRead>(reader: &mut R, mut bom: bool) -> io::Result<Option<u8>> {
    loop {
        let buf = fill(reader)?;
        if buf.is_empty() {
            return Ok(None);
        }
        if bom && buf.len() >= 3 && buf.starts_with(b"\xEF\xBB\xBF") {
            reader.consume(3);
            bom = false;
            continue;
        }
        bom = false;
        match buf.iter().position(|b| !b.is_ascii_whitespace()) {
            Some(i) => {
                let b = buf.get(i).copied();
                reader.consume(i);
                return Ok(b);
            }
            None => {
                let n = buf.len();
                reader.consume(n);
            }
        }
    }
}

/// A JSON array read element by element.
pub(super) struct JsonArray {
    started: bool,
    done: bool,
}

impl JsonArray {
    pub(super) fn new() -> Self {
        Self {
            started: false,
            done: false,
        }
    }

    /// The next element's bytes into `buf` (cleared first).
    pub(super) fn next<R: BufRead>(
        &mut self,
        reader: &mut R,
        buf: &mut Vec<u8>,
        max: usize,
    ) -> io::Result<Result<Unit, Malformed>> {
        buf.clear();
        if self.done {
            return Ok(Ok(Unit::End));
        }
        if !self.started {
            self.started = true;
            match peek_non_ws(reader, true)? {
                Some(b'[') => reader.consume(1),
                _ => return Ok(Err("a JSON dataset must be an array of records".into())),
            }
            if peek_non_ws(reader, false)? == Some(b']') {
                reader.consume(1);
                return self.finish(reader);
            }
        } else {
            match peek_non_ws(reader, false)? {
                Some(b',') => reader.consume(1),
                Some(b']') => {
                    reader.consume(1);
                    return self.finish(reader);
                }
                Some(other) => {
                    return Ok(Err(format!(
                        "expected `,` or `]` after the previous element, found `{}`",
                        char::from(other).escape_default()
                    )));
                }
                None => return Ok(Err("the array is not closed (no `]`)".into())),
            }
        }
        if peek_non_ws(reader, false)?.is_none() {
            return Ok(Err("the array is not closed (no `]`)".into()));
        }
        self.element(reader, buf, max)
    }

    fn finish<R: BufRead>(&mut self, reader: &mut R) -> io::Result<Result<Unit, Malformed>> {
        self.done = true;
        match peek_non_ws(reader, false)? {
            None => Ok(Ok(Unit::End)),
            Some(_) => Ok(Err("data after the closing `]` of the array".into())),
        }
    }

    /// One element: scanned for its end (depth 0 at `,`/`]` outside strings), then left to serde.
    fn element<R: BufRead>(
        &mut self,
        reader: &mut R,
        buf: &mut Vec<u8>,
        max: usize,
    ) -> io::Result<Result<Unit, Malformed>> {
        let (mut depth, mut in_string, mut escaped) = (0u32, false, false);
        loop {
            let chunk = fill(reader)?;
            if chunk.is_empty() {
                return Ok(Err("the array is not closed (no `]`)".into()));
            }
            let mut end = None;
            for (i, &b) in chunk.iter().enumerate() {
                if in_string {
                    if escaped {
                        escaped = false;
                    } else if b == b'\\' {
                        escaped = true;
                    } else if b == b'"' {
                        in_string = false;
                    }
                    continue;
                }
                match b {
                    b'"' => in_string = true,
                    b'{' | b'[' => depth = depth.saturating_add(1),
                    b'}' | b']' if depth > 0 => {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            // An object or array element ends with its closing bracket.
                            end = Some(i.saturating_add(1));
                            break;
                        }
                    }
                    b',' | b']' if depth == 0 => {
                        end = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            let take = end.unwrap_or(chunk.len());
            if buf.len().saturating_add(take) > max {
                return Ok(Ok(Unit::TooLong));
            }
            buf.extend_from_slice(chunk.get(..take).unwrap_or_default());
            reader.consume(take);
            if end.is_some() {
                return Ok(Ok(Unit::Got));
            }
        }
    }
}

/// A CSV reader (RFC 4180: `,` separators, `"` quoting with `""` escapes, `\n` or `\r\n` records,
/// quoted fields may span lines). Fields of the current record are `buf[ends[i-1]..ends[i]]`.
pub(super) struct Csv {
    /// 1-based line of the next byte.
    pub(super) line: u64,
}

impl Csv {
    pub(super) fn new() -> Self {
        Self { line: 1 }
    }

    /// The next non-blank record; `start` gets its first line.
    pub(super) fn next<R: BufRead>(
        &mut self,
        reader: &mut R,
        buf: &mut Vec<u8>,
        ends: &mut Vec<usize>,
        start: &mut u64,
        max: usize,
    ) -> io::Result<Result<Unit, Malformed>> {
        loop {
            buf.clear();
            ends.clear();
            *start = self.line;
            let got = self.record(reader, buf, ends, max)?;
            match got {
                Ok(Unit::Got) if ends.len() == 1 && buf.is_empty() => continue, // blank line
                other => return Ok(other),
            }
        }
    }

    fn record<R: BufRead>(
        &mut self,
        reader: &mut R,
        buf: &mut Vec<u8>,
        ends: &mut Vec<usize>,
        max: usize,
    ) -> io::Result<Result<Unit, Malformed>> {
        #[derive(PartialEq)]
        enum S {
            FieldStart,
            Unquoted,
            Quoted,
            QuoteInQuoted,
        }
        let mut state = S::FieldStart;
        let mut any = false;
        loop {
            let chunk = fill(reader)?;
            if chunk.is_empty() {
                return Ok(match state {
                    S::Quoted => Err("a quoted field is not closed".into()),
                    _ if !any => Ok(Unit::End),
                    _ => {
                        if buf.last() == Some(&b'\r') && state == S::Unquoted {
                            buf.pop();
                        }
                        ends.push(buf.len());
                        Ok(Unit::Got)
                    }
                });
            }
            any = true;
            let mut i = 0;
            let mut done = false;
            while i < chunk.len() {
                let rest = chunk.get(i..).unwrap_or_default();
                match state {
                    S::FieldStart | S::Unquoted => {
                        if state == S::FieldStart && rest.first() == Some(&b'"') {
                            state = S::Quoted;
                            i = i.saturating_add(1);
                            continue;
                        }
                        state = S::Unquoted;
                        let n = memchr::memchr2(b',', b'\n', rest).unwrap_or(rest.len());
                        buf.extend_from_slice(rest.get(..n).unwrap_or_default());
                        i = i.saturating_add(n);
                        match rest.get(n) {
                            Some(b',') => {
                                ends.push(buf.len());
                                state = S::FieldStart;
                                i = i.saturating_add(1);
                            }
                            Some(_) => {
                                // `\n`: the record ends (a `\r` before it belongs to the ending).
                                if buf.last() == Some(&b'\r') {
                                    buf.pop();
                                }
                                ends.push(buf.len());
                                self.line = self.line.saturating_add(1);
                                i = i.saturating_add(1);
                                done = true;
                                break;
                            }
                            None => {}
                        }
                    }
                    S::Quoted => {
                        let n = memchr::memchr(b'"', rest).unwrap_or(rest.len());
                        let seg = rest.get(..n).unwrap_or_default();
                        self.line = self
                            .line
                            .saturating_add(memchr::memchr_iter(b'\n', seg).count() as u64);
                        buf.extend_from_slice(seg);
                        i = i.saturating_add(n);
                        if n < rest.len() {
                            state = S::QuoteInQuoted;
                            i = i.saturating_add(1);
                        }
                    }
                    S::QuoteInQuoted => match rest.first() {
                        Some(b'"') => {
                            buf.push(b'"');
                            state = S::Quoted;
                            i = i.saturating_add(1);
                        }
                        Some(b',') => {
                            ends.push(buf.len());
                            state = S::FieldStart;
                            i = i.saturating_add(1);
                        }
                        Some(b'\r') if rest.get(1).is_none_or(|b| *b == b'\n') => {
                            i = i.saturating_add(1)
                        }
                        Some(b'\n') => {
                            ends.push(buf.len());
                            self.line = self.line.saturating_add(1);
                            i = i.saturating_add(1);
                            done = true;
                            break;
                        }
                        Some(other) => {
                            return Ok(Err(format!(
                                "`{}` after the closing quote of a field (a quote inside a quoted field is written \"\")",
                                char::from(*other).escape_default()
                            )));
                        }
                        None => {}
                    },
                }
                if buf.len() > max {
                    return Ok(Ok(Unit::TooLong));
                }
            }
            reader.consume(i);
            if buf.len() > max {
                return Ok(Ok(Unit::TooLong));
            }
            if done {
                return Ok(Ok(Unit::Got));
            }
        }
    }
}
