//! The request side of the virtual connections: a [`Request`] written as HTTP/1.1 for
//! the guest to read.

use crate::request::{Request, HOP_BY_HOP};

/// Whether `b` may appear in a method (an RFC 9110 token character).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The request as HTTP/1.1 bytes: the request line, the client's end-to-end headers (the
/// hop-by-hop ones, those the client's Connection header names, and its own framing are
/// left out), and the body's Content-Length (when there is a body or the method takes
/// one). No Connection header: the guest sees the request as the client sent it, and the
/// host ends the connection itself once the response is complete (crate::listen).
pub fn serialize(req: &Request) -> Vec<u8> {
    // The front parsed both, so they are valid; a configured warm-up request may not be:
    // nothing may break the request line.
    let method: String = req
        .method
        .chars()
        .filter(|&c| c.is_ascii() && is_tchar(c as u8))
        .collect();
    let method = if method.is_empty() {
        "GET".to_owned()
    } else {
        method
    };
    let mut url = String::new();
    for c in req.url.chars() {
        if c.is_ascii_control() || c == ' ' {
            url.push_str(&format!("%{:02X}", c as u32));
        } else {
            url.push(c);
        }
    }
    if url.is_empty() {
        url.push('/');
    }
    let mut out = format!("{method} {url} HTTP/1.1\r\n").into_bytes();
    let fields: Vec<(&str, &str)> = req
        .headers
        .iter()
        .filter_map(|h| h.split_once(':'))
        .map(|(n, v)| (n.trim(), v))
        .filter(|(n, _)| !n.is_empty() && !n.bytes().any(|b| b <= b' ' || b == 0x7f))
        .collect();
    // Fields the client's Connection header names are hop-by-hop too.
    let named: Vec<String> = fields
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
        .flat_map(|(_, v)| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    let mut host = false;
    let mut ctype = false;
    for (name, value) in fields {
        let lower = name.to_ascii_lowercase();
        if HOP_BY_HOP.contains(&lower.as_str()) || named.contains(&lower) {
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
    if !req.body.is_empty() || !matches!(method.as_str(), "GET" | "HEAD" | "OPTIONS" | "DELETE") {
        out.extend_from_slice(format!("Content-Length: {}\r\n", req.body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&req.body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_without_connection_with_length() {
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
            "POST /x?y=1 HTTP/1.1\r\nHost: example\r\nX-A: bInjected: 1\r\nContent-Length: 5\r\n\r\nhello"
        );
        let g = String::from_utf8(serialize(&Request::get("/"))).unwrap();
        assert_eq!(g, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    }

    #[test]
    fn hop_by_hop_request_fields_are_left_out() {
        let req = Request {
            method: "GET".into(),
            url: "/a b".into(),
            headers: vec![
                "Host: h".into(),
                "Connection: keep-alive, X-Secret-Hop , Upgrade".into(),
                "connection: x-other".into(),
                "Upgrade: websocket".into(),
                "TE: trailers".into(),
                "Trailer: X-T".into(),
                "Proxy-Connection: keep-alive".into(),
                "Keep-Alive: timeout=5".into(),
                "Transfer-Encoding: chunked".into(),
                "Content-Length: 99".into(),
                "X-Secret-Hop: 1".into(),
                "X-Other: 2".into(),
                "X-Kept: 3".into(),
            ],
            ..Request::default()
        };
        let s = String::from_utf8(serialize(&req)).unwrap();
        assert_eq!(s, "GET /a%20b HTTP/1.1\r\nHost: h\r\nX-Kept: 3\r\n\r\n");
        // Nothing may break the request line.
        let bad = Request {
            method: "GET /x HTTP/1.1\r\nX:".into(),
            url: "/\r\nInjected: 1".into(),
            ..Request::default()
        };
        let s = String::from_utf8(serialize(&bad)).unwrap();
        assert_eq!(
            s.lines().next().unwrap(),
            "GETxHTTP1.1X /%0D%0AInjected:%201 HTTP/1.1"
        );
        assert_eq!(
            s,
            "GETxHTTP1.1X /%0D%0AInjected:%201 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n"
        );
    }
}
