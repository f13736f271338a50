//! HTTP/1.1 on the virtual connections: the host writes a [`crate::request::Request`] as
//! an HTTP/1.1 request ([`serialize`]), and reads the guest's bytes as an HTTP/1.1
//! response, deciding when it is complete (Content-Length, chunked, or the guest closing)
//! and turning it into a [`Response`].

mod request;

pub use request::serialize;

use crate::request::Response;

/// Errors reading a guest's HTTP response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The bytes are not an HTTP/1.x response.
    #[error("the program wrote an invalid HTTP response ({0}); it must answer HTTP/1.1")]
    Invalid(String),
    /// The connection ended before the response was complete.
    #[error(
        "the program closed the connection before a complete HTTP response ({0} bytes written)"
    )]
    Truncated(usize),
    /// Larger than max_response_body allows.
    #[error("the response is larger than {0} bytes; raise max_response_body")]
    TooLarge(u64),
}

/// Most header fields a response may have.
const MAX_HEADERS: usize = 128;
/// Room for the status line and headers on top of max_response_body.
pub const HEADER_ROOM: u64 = 64 << 10;
/// Longest chunk-size line (with its extensions) or trailer line.
const MAX_LINE: usize = 4 << 10;
/// Most interim (1xx) responses before the final one.
const MAX_INTERIM: usize = 16;

/// Response field (lower case) by which a program says it has background work to finish
/// after this response (a Workers `ctx.waitUntil`): value `1` sets
/// [`Response::background`]. The field is the host's, never passed on to the client.
pub const BACKGROUND_FIELD: &str = "kvmjs-background";

/// Whether `buf` (everything the guest wrote) holds a complete response to a request
/// with method `method`; `closed`: the guest will write no more. `Ok(None)`: not yet.
pub fn parse_response(
    buf: &[u8],
    closed: bool,
    method: &str,
    max_body: u64,
) -> Result<Option<Response>, HttpError> {
    Framer::new(method, max_body).feed(buf, closed)
}

/// How the body of a response ends.
#[derive(Clone, Copy, Debug)]
enum Framing {
    /// No body (HEAD, 204, 304).
    Empty,
    /// Content-Length.
    Length(u64),
    /// Transfer-Encoding: chunked.
    Chunked,
    /// Until the guest closes.
    Close,
}

/// Where a chunked body is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    /// At a chunk-size line.
    Size,
    /// In a chunk of this many bytes (then CRLF).
    Data(usize),
    /// In the trailer section.
    Trailers,
}

/// Reads a response incrementally as the guest writes it: every byte is looked at a
/// bounded number of times however the guest splits its writes (the search for the end
/// of a line or of the header section resumes where it stopped; a chunk is copied once
/// it is all there), so a guest writing a large response in small pieces costs the host
/// linear, not quadratic, work.
#[derive(Debug)]
pub struct Framer {
    method: String,
    max_body: u64,
    /// Start of the (next) response head: interim 1xx responses are skipped.
    head_at: usize,
    /// Interim responses skipped.
    interim: usize,
    /// Where the search for the end of the current line or head resumes.
    scan_at: usize,
    head: Option<(Response, usize, Framing)>,
    /// Chunked: offset of the next chunk-size line, chunk or trailer line.
    chunk_at: usize,
    chunk: Chunk,
    body: Vec<u8>,
}

impl Framer {
    /// A framer for the response to a `method` request.
    pub fn new(method: &str, max_body: u64) -> Framer {
        Framer {
            method: method.to_owned(),
            max_body,
            head_at: 0,
            interim: 0,
            scan_at: 0,
            head: None,
            chunk_at: 0,
            chunk: Chunk::Size,
            body: Vec::new(),
        }
    }

    /// Looks at `buf`, everything the guest wrote so far (it only grows between calls);
    /// `closed`: it will write no more. `Ok(None)`: not complete yet.
    pub fn feed(&mut self, buf: &[u8], closed: bool) -> Result<Option<Response>, HttpError> {
        if buf.len() as u64 > self.max_body.saturating_add(HEADER_ROOM) {
            return Err(HttpError::TooLarge(self.max_body));
        }
        let truncated = || {
            if closed {
                Err(HttpError::Truncated(buf.len()))
            } else {
                Ok(None)
            }
        };
        if self.head.is_none() && !self.parse_head(buf)? {
            if closed && self.interim > 0 {
                return Err(HttpError::Invalid(
                    "only interim 1xx responses, no final response".into(),
                ));
            }
            return truncated();
        }
        let Some((resp, start, framing)) = &self.head else {
            return truncated();
        };
        let (start, framing) = (*start, *framing);
        let body = &buf[start..];
        let done = |mut r: Response, b: Vec<u8>| {
            r.body = b;
            Ok(Some(r))
        };
        match framing {
            Framing::Empty => done(resp.clone(), Vec::new()),
            Framing::Length(len) if (body.len() as u64) >= len => {
                done(resp.clone(), body[..len as usize].to_vec())
            }
            Framing::Length(_) => truncated(),
            Framing::Close if body.len() as u64 > self.max_body => {
                Err(HttpError::TooLarge(self.max_body))
            }
            Framing::Close if closed => done(resp.clone(), body.to_vec()),
            Framing::Close => Ok(None),
            Framing::Chunked => {
                if self.chunk_at == 0 {
                    self.chunk_at = start;
                    self.scan_at = start;
                }
                if self.dechunk(buf)? {
                    let b = std::mem::take(&mut self.body);
                    let r = self.head.as_ref().map(|h| h.0.clone()).unwrap_or_default();
                    done(r, b)
                } else {
                    truncated()
                }
            }
        }
    }

    /// The end of the header section starting at `head_at` (just past its empty line),
    /// or `None` while it is not all there.
    fn head_end(&mut self, buf: &[u8]) -> Option<usize> {
        let mut i = self.scan_at.max(self.head_at);
        while let Some(p) = buf[i..].iter().position(|&b| b == b'\n') {
            let nl = i + p;
            match &buf[nl + 1..] {
                [b'\n', ..] => return Some(nl + 2),
                [b'\r', b'\n', ..] => return Some(nl + 3),
                // Whether this line ends the head depends on bytes not written yet.
                [] | [b'\r'] => {
                    self.scan_at = nl;
                    return None;
                }
                _ => i = nl + 1,
            }
        }
        self.scan_at = buf.len();
        None
    }

    /// The end of the line starting at `from` (the index of its `\n`), or `None` while
    /// it is not all there.
    fn line_end(&mut self, buf: &[u8], from: usize) -> Result<Option<usize>, HttpError> {
        let start = self.scan_at.max(from);
        if let Some(p) = buf[start..].iter().position(|&b| b == b'\n') {
            return Ok(Some(start + p));
        }
        self.scan_at = buf.len();
        if buf.len() - from > MAX_LINE {
            return Err(HttpError::Invalid(format!(
                "a chunk-size or trailer line over {MAX_LINE} bytes"
            )));
        }
        Ok(None)
    }

    /// Parses the response head; `false` while incomplete.
    fn parse_head(&mut self, buf: &[u8]) -> Result<bool, HttpError> {
        loop {
            let Some(end) = self.head_end(buf) else {
                if (buf.len() - self.head_at) as u64 > HEADER_ROOM {
                    return Err(HttpError::Invalid(format!(
                        "a header section over {HEADER_ROOM} bytes"
                    )));
                }
                return Ok(false);
            };
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut r = httparse::Response::new(&mut headers);
            let hlen = match r.parse(&buf[self.head_at..end]) {
                Ok(httparse::Status::Complete(n)) => n,
                Ok(httparse::Status::Partial) => {
                    return Err(HttpError::Invalid("a malformed header section".into()))
                }
                Err(e) => return Err(HttpError::Invalid(e.to_string())),
            };
            let status = r.code.unwrap_or(0);
            if !(100..=599).contains(&status) {
                return Err(HttpError::Invalid(format!("status {status}")));
            }
            match status {
                // Interim responses (100 Continue, 102 Processing, 103 Early Hints)
                // precede the real one.
                100 | 102 | 103 if self.interim < MAX_INTERIM => {
                    self.interim += 1;
                    self.head_at += hlen;
                    self.scan_at = self.head_at;
                    continue;
                }
                100 | 102 | 103 => {
                    return Err(HttpError::Invalid(format!(
                        "more than {MAX_INTERIM} interim 1xx responses"
                    )))
                }
                101 => {
                    return Err(HttpError::Invalid(
                        "101 Switching Protocols: a request is one HTTP/1.1 exchange; \
                         protocol upgrades (WebSocket) are not supported"
                            .into(),
                    ))
                }
                100..=199 => {
                    return Err(HttpError::Invalid(format!(
                        "status {status} is not a final response"
                    )))
                }
                _ => {}
            }
            let mut resp = Response {
                status,
                ..Response::default()
            };
            let mut length = None;
            let mut chunked = false;
            for h in r.headers.iter() {
                match h.name.to_ascii_lowercase().as_str() {
                    "content-length" => {
                        let v = content_length(h.value)?;
                        if length.is_some_and(|l| l != v) {
                            return Err(HttpError::Invalid("conflicting Content-Length".into()));
                        }
                        length = Some(v);
                    }
                    "transfer-encoding" => {
                        let v = String::from_utf8_lossy(h.value);
                        // Only chunked: the host does not decode codings, and a second
                        // field would add one.
                        if chunked || !v.trim_matches([' ', '\t']).eq_ignore_ascii_case("chunked") {
                            return Err(HttpError::Invalid(format!(
                                "unsupported Transfer-Encoding {v:?}; only \"chunked\" is"
                            )));
                        }
                        chunked = true;
                    }
                    "content-type" => resp.content_type = h.value.to_vec(),
                    "connection" | "keep-alive" => {}
                    name if name == BACKGROUND_FIELD => {
                        resp.background = h.value.trim_ascii() == b"1";
                    }
                    _ => {
                        let mut f = h.name.as_bytes().to_vec();
                        f.extend_from_slice(b": ");
                        f.extend_from_slice(h.value);
                        resp.headers.push(f);
                    }
                }
            }
            let no_body = self.method.eq_ignore_ascii_case("HEAD") || matches!(status, 204 | 304);
            let framing = match (no_body, chunked, length) {
                (true, _, _) => Framing::Empty,
                (false, true, _) => Framing::Chunked,
                (false, false, Some(l)) if l > self.max_body => {
                    return Err(HttpError::TooLarge(self.max_body))
                }
                (false, false, Some(l)) => Framing::Length(l),
                (false, false, None) => Framing::Close,
            };
            self.head = Some((resp, self.head_at + hlen, framing));
            return Ok(true);
        }
    }

    /// Takes the complete chunks after `chunk_at`; `true` once the last chunk and the
    /// trailer section are in.
    fn dechunk(&mut self, buf: &[u8]) -> Result<bool, HttpError> {
        loop {
            match self.chunk {
                Chunk::Data(size) => {
                    let b = &buf[self.chunk_at..];
                    if b.len() < size + 2 {
                        return Ok(false);
                    }
                    if &b[size..size + 2] != b"\r\n" {
                        return Err(HttpError::Invalid("chunk without CRLF".into()));
                    }
                    self.body.extend_from_slice(&b[..size]);
                    self.chunk_at += size + 2;
                    self.scan_at = self.chunk_at;
                    self.chunk = Chunk::Size;
                }
                Chunk::Size | Chunk::Trailers => {
                    let Some(nl) = self.line_end(buf, self.chunk_at)? else {
                        return Ok(false);
                    };
                    let line = &buf[self.chunk_at..nl];
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    self.chunk_at = nl + 1;
                    self.scan_at = self.chunk_at;
                    if self.chunk == Chunk::Trailers {
                        if line.is_empty() {
                            return Ok(true);
                        }
                        continue;
                    }
                    let size = chunk_size(line)?;
                    if size == 0 {
                        self.chunk = Chunk::Trailers;
                        continue;
                    }
                    if (self.body.len() as u64).saturating_add(size) > self.max_body {
                        return Err(HttpError::TooLarge(self.max_body));
                    }
                    // At most max_body, which the check above bounds.
                    self.chunk = Chunk::Data(
                        usize::try_from(size).map_err(|_| HttpError::TooLarge(self.max_body))?,
                    );
                }
            }
        }
    }
}

/// A Content-Length value: digits only (no sign, no list, no inner spaces).
fn content_length(v: &[u8]) -> Result<u64, HttpError> {
    let bad = || {
        HttpError::Invalid(format!(
            "bad Content-Length {:?}",
            String::from_utf8_lossy(v)
        ))
    };
    let t = v.trim_ascii();
    if t.is_empty() || !t.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    std::str::from_utf8(t)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(bad)
}

/// The size on a chunk-size line (without its line ending): 1 to 16 hex digits, then
/// optional whitespace and `;extensions`.
fn chunk_size(line: &[u8]) -> Result<u64, HttpError> {
    let bad = || {
        HttpError::Invalid(format!(
            "bad chunk-size line {:?}",
            String::from_utf8_lossy(&line[..line.len().min(64)])
        ))
    };
    let digits = line.split(|&b| b == b';').next().unwrap_or_default();
    let digits = digits.trim_ascii_end();
    if digits.is_empty() || digits.len() > 16 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return Err(bad());
    }
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| u64::from_str_radix(s, 16).ok())
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u64 = 1 << 20;

    #[test]
    fn content_length_framing() {
        let full =
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Y: z\r\nContent-Length: 2\r\n\r\nhi";
        for cut in 0..full.len() {
            assert_eq!(
                parse_response(&full[..cut], false, "GET", MAX),
                Ok(None),
                "{cut}"
            );
            assert_eq!(
                parse_response(&full[..cut], true, "GET", MAX),
                Err(HttpError::Truncated(cut))
            );
        }
        let r = parse_response(full, false, "GET", MAX).unwrap().unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"hi");
        assert_eq!(r.content_type, b"text/plain");
        assert_eq!(r.headers, vec![b"X-Y: z".to_vec()]);
        // HEAD: no body whatever the length says.
        let h = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
        assert_eq!(
            parse_response(h, false, "HEAD", MAX).unwrap().unwrap().body,
            b""
        );
        assert_eq!(
            parse_response(h, false, "GET", 5),
            Err(HttpError::TooLarge(5))
        );
    }

    #[test]
    fn chunked_framing() {
        let full = b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n3;ext=1\r\n!!!\r\n0\r\nX-T: 1\r\n\r\n";
        for cut in 0..full.len() {
            assert_eq!(
                parse_response(&full[..cut], false, "GET", MAX),
                Ok(None),
                "{cut}"
            );
        }
        let r = parse_response(full, false, "GET", MAX).unwrap().unwrap();
        assert_eq!((r.status, r.body.as_slice()), (201, &b"hi!!!"[..]));
        // Fed a byte at a time, as a guest may write it.
        let mut f = Framer::new("GET", MAX);
        for cut in 0..full.len() {
            assert_eq!(f.feed(&full[..cut], false), Ok(None), "{cut}");
        }
        assert_eq!(f.feed(full, false).unwrap().unwrap().body, b"hi!!!");
        let bad = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        assert!(matches!(
            parse_response(bad, false, "GET", MAX),
            Err(HttpError::Invalid(_))
        ));
    }

    #[test]
    fn close_framing_interim_and_garbage() {
        let b = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\n\r\nuntil close";
        assert_eq!(parse_response(b, false, "GET", MAX), Ok(None));
        let r = parse_response(b, true, "GET", MAX).unwrap().unwrap();
        assert_eq!(r.body, b"until close");
        let nc = b"HTTP/1.1 204 No Content\r\n\r\n";
        assert_eq!(
            parse_response(nc, false, "GET", MAX)
                .unwrap()
                .unwrap()
                .status,
            204
        );
        assert!(matches!(
            parse_response(b"hello world\r\n\r\n", false, "GET", MAX),
            Err(HttpError::Invalid(_))
        ));
        assert!(matches!(
            parse_response(
                b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
                false,
                "GET",
                MAX
            ),
            Err(HttpError::Invalid(_))
        ));
        assert_eq!(
            parse_response(b"", true, "GET", MAX),
            Err(HttpError::Truncated(0))
        );
        assert_eq!(
            parse_response(&vec![b'a'; 70 << 10], false, "GET", 1024),
            Err(HttpError::TooLarge(1024))
        );
    }

    #[test]
    fn final_1xx_is_an_error_and_interim_is_skipped() {
        for head in [
            &b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"[..],
            b"HTTP/1.1 150 Odd\r\n\r\n",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 101 Switching Protocols\r\n\r\n",
        ] {
            assert!(
                matches!(
                    parse_response(head, false, "GET", MAX),
                    Err(HttpError::Invalid(_))
                ),
                "{}",
                String::from_utf8_lossy(head)
            );
        }
        let b = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx";
        let r = parse_response(b, false, "GET", MAX).unwrap().unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"x"[..]));
        // Only interim responses, then the end: a clear error.
        let only = b"HTTP/1.1 100 Continue\r\n\r\n";
        assert_eq!(parse_response(only, false, "GET", MAX), Ok(None));
        assert!(matches!(
            parse_response(only, true, "GET", MAX),
            Err(HttpError::Invalid(m)) if m.contains("interim")
        ));
        let many = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(MAX_INTERIM + 1);
        assert!(matches!(
            parse_response(&many, false, "GET", MAX),
            Err(HttpError::Invalid(_))
        ));
    }

    #[test]
    fn framing_fields_must_be_exact() {
        for field in [
            "Transfer-Encoding: gzip, chunked",
            "Transfer-Encoding: identity",
            "Transfer-Encoding: chunked, chunked",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
            "Content-Length: +5",
            "Content-Length: -1",
            "Content-Length: 5 5",
            "Content-Length: 5, 5",
            "Content-Length: 0x5",
            "Content-Length: ",
            "Content-Length: 99999999999999999999999",
            "Content-Length: 5\r\nContent-Length: 6",
        ] {
            let r = format!("HTTP/1.1 200 OK\r\n{field}\r\n\r\nhello");
            assert!(
                matches!(
                    parse_response(r.as_bytes(), true, "GET", MAX),
                    Err(HttpError::Invalid(_))
                ),
                "{field}"
            );
        }
        for field in ["Transfer-Encoding: Chunked", "Transfer-Encoding:  chunked "] {
            let r = format!("HTTP/1.1 200 OK\r\n{field}\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
            assert_eq!(
                parse_response(r.as_bytes(), false, "GET", MAX)
                    .unwrap()
                    .unwrap()
                    .body,
                b"hello"
            );
        }
        let same = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(
            parse_response(same, false, "GET", MAX)
                .unwrap()
                .unwrap()
                .body,
            b"hello"
        );
    }

    #[test]
    fn chunk_size_lines_need_hex_digits() {
        for size_line in [
            "\r\n",
            ";ext=1\r\n",
            " 5\r\n",
            "g\r\n",
            "11111111111111111\r\n",
        ] {
            let r = format!(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n{size_line}\r\n"
            );
            assert!(
                matches!(
                    parse_response(r.as_bytes(), false, "GET", MAX),
                    Err(HttpError::Invalid(_))
                ),
                "{size_line:?}"
            );
        }
        // Whitespace before extensions, bare-LF lines and a trailer field are fine.
        let ok =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2 ;a=b\r\nhi\r\n0\nX: y\n\n";
        assert_eq!(
            parse_response(ok, false, "GET", MAX).unwrap().unwrap().body,
            b"hi"
        );
        // An endless extension is cut off.
        let mut long = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;".to_vec();
        long.resize(long.len() + MAX_LINE + 1, b'a');
        assert!(matches!(
            parse_response(&long, false, "GET", MAX),
            Err(HttpError::Invalid(_))
        ));
    }

    #[test]
    fn the_background_field_is_the_hosts() {
        for (field, background) in [
            ("kvmjs-background: 1", true),
            ("KVMjs-Background:  1 ", true),
            ("kvmjs-background: 0", false),
            ("kvmjs-background: yes", false),
        ] {
            let r = format!("HTTP/1.1 200 OK\r\nX-A: b\r\n{field}\r\nContent-Length: 2\r\n\r\nhi");
            let resp = parse_response(r.as_bytes(), false, "GET", MAX)
                .unwrap()
                .unwrap();
            assert_eq!(resp.background, background, "{field}");
            assert_eq!(resp.headers, vec![b"X-A: b".to_vec()], "{field}");
        }
        let plain = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
        assert!(
            !parse_response(plain, false, "GET", MAX)
                .unwrap()
                .unwrap()
                .background
        );
    }

    /// A response written a byte at a time: the framer looks at each new byte a bounded
    /// number of times (counted through the work it does: no full re-parse per write).
    #[test]
    fn framing_is_incremental() {
        let mut full = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..100 {
            full.extend_from_slice(format!("X-H{i}: {}\r\n", "v".repeat(100)).as_bytes());
        }
        full.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
        for _ in 0..100 {
            full.extend_from_slice(b"a;ext=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n0123456789\r\n");
        }
        full.extend_from_slice(b"0\r\n\r\n");
        let mut f = Framer::new("GET", MAX);
        // The scan position only moves forward, and by no more than what is new.
        let mut last_scan = 0;
        for cut in 0..full.len() {
            assert_eq!(f.feed(&full[..cut], false), Ok(None), "{cut}");
            assert!(f.scan_at >= last_scan && f.scan_at <= cut, "{cut}");
            assert!(
                cut - f.scan_at <= 2 || f.head.is_some(),
                "{cut}: the head is rescanned"
            );
            last_scan = f.scan_at;
        }
        let r = f.feed(&full, false).unwrap().unwrap();
        assert_eq!(r.body, b"0123456789".repeat(100));
        assert_eq!(r.headers.len(), 100);
    }
}
