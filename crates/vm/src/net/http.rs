//! HTTP/1.1 on the virtual connections: the host writes a [`Request`] as an HTTP/1.1
//! request, and reads the guest's bytes as an HTTP/1.1 response, deciding when it is
//! complete (Content-Length, chunked, or the guest closing) and turning it into a
//! [`Response`].

use crate::request::{Request, Response};

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
const HEADER_ROOM: u64 = 64 << 10;

/// The request as HTTP/1.1 bytes: the request line, the caller's headers (without any
/// Connection, Content-Length or Transfer-Encoding of their own), `Connection: close`
/// and the body's Content-Length (when there is a body or the method takes one).
pub fn serialize(req: &Request) -> Vec<u8> {
    let method = if req.method.is_empty() {
        "GET"
    } else {
        &req.method
    };
    let url = if req.url.is_empty() { "/" } else { &req.url };
    let mut out = format!("{method} {url} HTTP/1.1\r\n").into_bytes();
    let mut host = false;
    let mut ctype = false;
    for h in &req.headers {
        let Some((name, value)) = h.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name.is_empty() || name.bytes().any(|b| b <= b' ' || b == 0x7f) {
            continue;
        }
        let lower = name.to_ascii_lowercase();
        if matches!(
            lower.as_str(),
            "connection" | "content-length" | "transfer-encoding" | "keep-alive"
        ) {
            continue;
        }
        host |= lower == "host";
        ctype |= lower == "content-type";
        let value: String = value
            .trim()
            .chars()
            .filter(|&c| c != '\r' && c != '\n')
            .collect();
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    if !host {
        out.extend_from_slice(b"Host: localhost\r\n");
    }
    if !ctype && !req.content_type.is_empty() {
        let v: String = req
            .content_type
            .chars()
            .filter(|&c| c != '\r' && c != '\n')
            .collect();
        out.extend_from_slice(format!("Content-Type: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(b"Connection: close\r\n");
    if !req.body.is_empty() || !matches!(method, "GET" | "HEAD" | "OPTIONS" | "DELETE") {
        out.extend_from_slice(format!("Content-Length: {}\r\n", req.body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&req.body);
    out
}

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
    /// No body (HEAD, 1xx, 204, 304).
    Empty,
    /// Content-Length.
    Length(u64),
    /// Transfer-Encoding: chunked.
    Chunked,
    /// Until the guest closes.
    Close,
}

/// Reads a response incrementally as the guest writes it: each call looks only at what
/// is new (the header section at most [`HEADER_ROOM`] bytes, each chunk once), so a guest
/// writing a large response in small pieces costs the host linear, not quadratic, work.
#[derive(Debug)]
pub struct Framer {
    method: String,
    max_body: u64,
    /// Start of the (next) response head: interim 1xx responses are skipped.
    head_at: usize,
    head: Option<(Response, usize, Framing)>,
    /// Chunked: offset of the next chunk-size (or trailer) line, and the body so far.
    chunk_at: usize,
    in_trailers: bool,
    body: Vec<u8>,
}

impl Framer {
    /// A framer for the response to a `method` request.
    pub fn new(method: &str, max_body: u64) -> Framer {
        Framer {
            method: method.to_owned(),
            max_body,
            head_at: 0,
            head: None,
            chunk_at: 0,
            in_trailers: false,
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
            Framing::Close if closed => done(resp.clone(), body.to_vec()),
            Framing::Close => Ok(None),
            Framing::Chunked => {
                if self.chunk_at == 0 {
                    self.chunk_at = start;
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

    /// Parses the response head; `false` while incomplete.
    fn parse_head(&mut self, buf: &[u8]) -> Result<bool, HttpError> {
        loop {
            let rest = &buf[self.head_at..];
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut r = httparse::Response::new(&mut headers);
            let hlen = match r.parse(rest) {
                Ok(httparse::Status::Complete(n)) => n,
                Ok(httparse::Status::Partial) if rest.len() as u64 > HEADER_ROOM => {
                    return Err(HttpError::Invalid(format!(
                        "a header section over {HEADER_ROOM} bytes"
                    )))
                }
                Ok(httparse::Status::Partial) => return Ok(false),
                Err(e) => return Err(HttpError::Invalid(e.to_string())),
            };
            let status = r.code.unwrap_or(0);
            if !(100..=599).contains(&status) {
                return Err(HttpError::Invalid(format!("status {status}")));
            }
            // Interim responses (100 Continue, 103 Early Hints) precede the real one.
            if (100..200).contains(&status) && status != 101 {
                self.head_at += hlen;
                continue;
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
                        let v = std::str::from_utf8(h.value)
                            .ok()
                            .and_then(|v| v.trim().parse::<u64>().ok())
                            .ok_or_else(|| HttpError::Invalid("bad Content-Length".into()))?;
                        if length.is_some_and(|l| l != v) {
                            return Err(HttpError::Invalid("conflicting Content-Length".into()));
                        }
                        length = Some(v);
                    }
                    "transfer-encoding" => {
                        let v = String::from_utf8_lossy(h.value).to_ascii_lowercase();
                        chunked = v
                            .split(',')
                            .next_back()
                            .is_some_and(|t| t.trim() == "chunked");
                        if !chunked {
                            return Err(HttpError::Invalid(format!(
                                "unsupported transfer-encoding {v}"
                            )));
                        }
                    }
                    "content-type" => resp.content_type = h.value.to_vec(),
                    "connection" | "keep-alive" => {}
                    _ => {
                        let mut f = h.name.as_bytes().to_vec();
                        f.extend_from_slice(b": ");
                        f.extend_from_slice(h.value);
                        resp.headers.push(f);
                    }
                }
            }
            let no_body =
                self.method.eq_ignore_ascii_case("HEAD") || matches!(status, 101 | 204 | 304);
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
            let b = &buf[self.chunk_at..];
            if self.in_trailers {
                // Trailer fields, then an empty line.
                let Some(end) = b.windows(2).position(|w| w == b"\r\n") else {
                    if b.len() as u64 > HEADER_ROOM {
                        return Err(HttpError::Invalid("a trailer over 64 KiB".into()));
                    }
                    return Ok(false);
                };
                self.chunk_at += end + 2;
                if end == 0 {
                    return Ok(true);
                }
                continue;
            }
            let (used, size) = match httparse::parse_chunk_size(b) {
                Ok(httparse::Status::Complete(x)) => x,
                Ok(httparse::Status::Partial) => return Ok(false),
                Err(_) => return Err(HttpError::Invalid("bad chunk size".into())),
            };
            if size == 0 {
                self.chunk_at += used;
                self.in_trailers = true;
                continue;
            }
            if (self.body.len() as u64).saturating_add(size) > self.max_body {
                return Err(HttpError::TooLarge(self.max_body));
            }
            let size = size as usize;
            if b.len() < used + size + 2 {
                return Ok(false);
            }
            if &b[used + size..used + size + 2] != b"\r\n" {
                return Err(HttpError::Invalid("chunk without CRLF".into()));
            }
            self.body.extend_from_slice(&b[used..used + size]);
            self.chunk_at += used + size + 2;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u64 = 1 << 20;

    #[test]
    fn serializes_with_close_and_length() {
        let req = Request {
            method: "POST".into(),
            url: "/x?y=1".into(),
            headers: vec![
                "Host: example".into(),
                "Connection: keep-alive".into(),
                "X-A: b\r\nInjected: 1".into(),
                "bad line".into(),
            ],
            body: b"hello".to_vec(),
            ..Request::default()
        };
        let s = String::from_utf8(serialize(&req)).unwrap();
        assert_eq!(
            s,
            "POST /x?y=1 HTTP/1.1\r\nHost: example\r\nX-A: bInjected: 1\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello"
        );
        let g = String::from_utf8(serialize(&Request::get("/"))).unwrap();
        assert_eq!(
            g,
            "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        );
    }

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
}
