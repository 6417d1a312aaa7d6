//! Finding where a request head ends, one read at a time, without parsing it.
//!
//! The listener must know when a head is complete to hand it to pingora, and when it has grown
//! too large to refuse it; parsing is pingora's (httparse's) job and stays there. The scanner
//! therefore only has to agree with httparse about *where* a head ends: after any empty lines
//! before the request line (httparse skips them), the first line that is empty, with lines
//! ended by CRLF or by a bare LF. The `head` fuzz target checks that agreement.
//!
//! State is carried across reads so that a client sending one byte at a time costs linear work,
//! not a rescan of everything it sent so far.

use memchr::memchr;

/// The most header fields in one head: httparse, as pingora calls it, refuses more.
pub const MAX_FIELDS: usize = 256;

/// Why a head is refused before pingora sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Oversized {
    /// The request line alone is longer than the limit: 414.
    RequestLine,
    /// The head is longer than the limit: 431.
    Head,
    /// More than [`MAX_FIELDS`] header lines: 431.
    Fields,
}

/// What the bytes read so far hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The head ends just before this offset; anything after it is body or a next request.
    Complete(usize),
    /// More bytes are needed.
    Partial,
    /// Over a bound: refused.
    Oversized(Oversized),
}

#[derive(Debug, Clone)]
/// Finds where a request head ends as its bytes arrive, within bounds, without
/// buffering the head twice.
pub struct HeadScan {
    /// Everything before this offset is decided.
    pos: usize,
    /// Still inside the empty lines a client may send before the request line.
    leading: bool,
    /// `pos` is the first byte of a line (the line after a line end).
    line_start: bool,
    /// Where the request line ends, once it has.
    request_line_end: Option<usize>,
    fields: usize,
}

impl Default for HeadScan {
    fn default() -> Self {
        HeadScan {
            pos: 0,
            leading: true,
            line_start: false,
            request_line_end: None,
            fields: 0,
        }
    }
}

impl HeadScan {
    /// Whether the request line has ended (it can be checked before the rest arrives).
    pub fn request_line_done(&self) -> bool {
        self.request_line_end.is_some()
    }

    /// Scans what `buf` holds beyond the previous call (`buf` only ever grows) and says how far
    /// the head has come. `max` bounds the head's size in bytes, leading empty lines included.
    pub fn advance(&mut self, buf: &[u8], max: usize) -> Progress {
        let progress = self.scan(buf);
        let size = match progress {
            Progress::Complete(end) => end,
            Progress::Partial => buf.len(),
            oversized => return oversized,
        };
        if size > max {
            return Progress::Oversized(match self.request_line_end {
                Some(end) if end < max => Oversized::Head,
                _ => Oversized::RequestLine,
            });
        }
        progress
    }

    fn scan(&mut self, buf: &[u8]) -> Progress {
        while self.leading {
            match buf.get(self.pos) {
                None => return Progress::Partial,
                Some(b'\n') => self.pos += 1,
                Some(b'\r') => match buf.get(self.pos + 1) {
                    None => return Progress::Partial,
                    Some(b'\n') => self.pos += 2,
                    // A bare CR: httparse refuses it, so the line is scanned as a request line
                    // and pingora answers it.
                    Some(_) => self.leading = false,
                },
                Some(_) => self.leading = false,
            }
        }
        loop {
            if self.line_start {
                match buf.get(self.pos) {
                    None => return Progress::Partial,
                    Some(b'\n') => return Progress::Complete(self.pos + 1),
                    Some(b'\r') => match buf.get(self.pos + 1) {
                        None => return Progress::Partial,
                        Some(b'\n') => return Progress::Complete(self.pos + 2),
                        Some(_) => {}
                    },
                    Some(_) => {}
                }
                self.line_start = false;
            }
            let Some(at) = memchr(b'\n', &buf[self.pos..]).map(|i| self.pos + i) else {
                self.pos = buf.len();
                return Progress::Partial;
            };
            if self.request_line_end.is_none() {
                self.request_line_end = Some(at);
            } else {
                self.fields += 1;
                if self.fields > MAX_FIELDS {
                    return Progress::Oversized(Oversized::Fields);
                }
            }
            self.pos = at + 1;
            self.line_start = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes, as a client might send it.
    fn scan_in_steps(input: &[u8], step: usize, max: usize) -> Progress {
        let mut scan = HeadScan::default();
        let mut last = Progress::Partial;
        for end in (step..input.len() + step).step_by(step) {
            last = scan.advance(&input[..end.min(input.len())], max);
            if last != Progress::Partial {
                return last;
            }
        }
        last
    }

    fn all_steps(input: &[u8], max: usize) -> Progress {
        let whole = scan_in_steps(input, input.len().max(1), max);
        for step in 1..input.len().min(40) {
            assert_eq!(scan_in_steps(input, step, max), whole, "step {step}");
        }
        whole
    }

    #[test]
    fn a_head_ends_at_its_first_empty_line() {
        let req = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody";
        assert_eq!(all_steps(req, 1000), Progress::Complete(req.len() - 4));
        let bare = b"GET / HTTP/1.1\nHost: a\n\nbody";
        assert_eq!(all_steps(bare, 1000), Progress::Complete(bare.len() - 4));
        let mixed = b"GET / HTTP/1.1\r\nHost: a\n\r\n";
        assert_eq!(all_steps(mixed, 1000), Progress::Complete(mixed.len()));
        let no_fields = b"GET / HTTP/1.1\r\n\r\n";
        assert_eq!(
            all_steps(no_fields, 1000),
            Progress::Complete(no_fields.len())
        );
    }

    #[test]
    fn empty_lines_before_the_request_line_are_not_its_end() {
        let req = b"\r\n\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(all_steps(req, 1000), Progress::Complete(req.len()));
        assert_eq!(all_steps(b"\r\n\r\n\r\n", 1000), Progress::Partial);
    }

    #[test]
    fn an_unfinished_head_is_partial() {
        for partial in [
            &b""[..],
            b"GET / HTTP/1.1",
            b"GET / HTTP/1.1\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n\r",
            b"GET / HTTP/1.1\r\nHost: a\r\r\n",
        ] {
            assert_eq!(all_steps(partial, 1000), Progress::Partial, "{partial:?}");
        }
    }

    #[test]
    fn the_size_limit_names_the_part_that_is_too_long() {
        let long_line = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(100));
        assert_eq!(
            all_steps(long_line.as_bytes(), 50),
            Progress::Oversized(Oversized::RequestLine)
        );
        // Unfinished, too: a client must not be able to send an endless request line.
        assert_eq!(
            all_steps(&long_line.as_bytes()[..80], 50),
            Progress::Oversized(Oversized::RequestLine)
        );
        let long_field = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(100));
        assert_eq!(
            all_steps(long_field.as_bytes(), 50),
            Progress::Oversized(Oversized::Head)
        );
        // Exactly at the limit is fine; the body after it does not count.
        let exact = b"GET / HTTP/1.1\r\n\r\nbody";
        assert_eq!(all_steps(exact, 18), Progress::Complete(18));
        assert_eq!(all_steps(exact, 17), Progress::Oversized(Oversized::Head));
    }

    #[test]
    fn more_fields_than_httparse_takes_are_refused() {
        let head = |n: usize| {
            format!(
                "GET / HTTP/1.1\r\n{}\r\n",
                (0..n).map(|i| format!("X-{i}: v\r\n")).collect::<String>()
            )
        };
        let at_limit = head(MAX_FIELDS);
        assert_eq!(
            all_steps(at_limit.as_bytes(), 1 << 20),
            Progress::Complete(at_limit.len())
        );
        assert_eq!(
            all_steps(head(MAX_FIELDS + 1).as_bytes(), 1 << 20),
            Progress::Oversized(Oversized::Fields)
        );
    }

    /// The agreement the `head` fuzz target checks at scale, on the shapes written above.
    #[test]
    fn httparse_agrees_on_where_heads_end() {
        for input in [
            &b"GET / HTTP/1.1\r\nHost: a\r\n\r\nrest"[..],
            b"\r\nGET / HTTP/1.1\nA: b\n\n",
            b"GET / HTTP/1.1\r\n\r\n",
        ] {
            let mut headers = [httparse::EMPTY_HEADER; MAX_FIELDS];
            let parsed = httparse::Request::new(&mut headers).parse(input);
            let end = match all_steps(input, 1 << 20) {
                Progress::Complete(end) => end,
                other => panic!("{input:?}: {other:?}"),
            };
            assert_eq!(parsed, Ok(httparse::Status::Complete(end)), "{input:?}");
        }
    }
}
