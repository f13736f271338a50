//! The HTTP exchange: ureq 3 (rustls, webpki roots), blocking on the VM's thread, within
//! the fetch's deadline. Redirects are followed here (not by ureq) so each hop is checked
//! against the allow-list and follows the Fetch Standard's method rules. It runs on the
//! fetch service's threads (super::service), never on a VM thread.

use super::pipe::PipeReader;
use super::policy::{self, FetchPolicy, NextHop, RedirectMode};
use super::FetchError;
use std::io::Read;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use url::Url;

/// A request to send.
#[derive(Debug)]
pub struct Outgoing {
    /// Method.
    pub method: String,
    /// Absolute http(s) URL.
    pub url: Url,
    /// Header fields (name, value).
    pub headers: Vec<(String, Vec<u8>)>,
    /// Redirect mode.
    pub redirect: RedirectMode,
}

/// The request body's source.
pub enum OutBody {
    /// No body.
    None,
    /// All of it.
    Bytes(Vec<u8>),
    /// Chunks written later (`fetch_write`), complete only after `fetch_end`.
    Stream(PipeReader),
}

/// A response head.
#[derive(Debug)]
pub struct Head {
    /// Status.
    pub status: u16,
    /// Header fields, names lower case.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The final URL.
    pub url: Url,
    /// Whether a redirect was followed.
    pub redirected: bool,
    /// Content-Length, when given.
    pub content_length: Option<u64>,
}

/// A response body being read.
pub struct Incoming {
    body: Option<ureq::BodyReader<'static>>,
    read: u64,
    limit: u64,
    url: String,
    deadline: Instant,
    timeout: Duration,
}

impl Incoming {
    /// Reads up to `buf.len()` bytes (one read: a slow origin's bytes are passed on as they
    /// come); 0 at the end.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, FetchError> {
        let Some(body) = self.body.as_mut() else {
            return Ok(0);
        };
        if Instant::now() >= self.deadline {
            self.body = None;
            return Err(timeout(&self.url, self.timeout));
        }
        let n = loop {
            match body.read(buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.body = None;
                    return Err(io_error(&self.url, &e, self.timeout));
                }
            }
        };
        self.read += n as u64;
        if self.read > self.limit {
            self.body = None;
            return Err(FetchError::ResponseTooLarge {
                url: self.url.clone(),
                limit: self.limit,
            });
        }
        if n == 0 {
            self.body = None;
        }
        Ok(n)
    }
}

fn timeout(url: &str, d: Duration) -> FetchError {
    FetchError::Timeout {
        url: url.into(),
        secs: d.as_secs_f64(),
    }
}

fn io_error(url: &str, e: &std::io::Error, d: Duration) -> FetchError {
    if e.kind() == std::io::ErrorKind::TimedOut {
        return timeout(url, d);
    }
    // ureq wraps its own errors (timeouts, limits) in io::Error for body reads.
    if let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<ureq::Error>()) {
        return ureq_error(url, inner, d);
    }
    FetchError::Network {
        url: url.into(),
        msg: e.to_string(),
    }
}

fn ureq_error(url: &str, e: &ureq::Error, d: Duration) -> FetchError {
    match e {
        ureq::Error::Timeout(_) => timeout(url, d),
        ureq::Error::Io(io) => io_error(url, io, d),
        other => FetchError::Network {
            url: url.into(),
            msg: other.to_string(),
        },
    }
}

/// The shared agent: no proxies from the environment, no connection pool (requests must
/// not share connections or learn from each other's timing), no automatic redirects or
/// status errors, any method token.
fn agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .proxy(None)
            .max_idle_connections(0)
            .max_idle_connections_per_host(0)
            .allow_non_standard_methods(true)
            .user_agent("kvmjs")
            .build()
            .new_agent()
    })
}

/// Checks `u` against the allow-list.
pub fn check_allowed(policy: &FetchPolicy, u: &Url) -> Result<(), FetchError> {
    if policy.allows(u) {
        return Ok(());
    }
    Err(FetchError::NotAllowed {
        url: u.to_string(),
        origin: u.origin().ascii_serialization(),
    })
}

/// Sends `out` with `body` and follows redirects; returns the final head and its body.
/// `deadline` bounds everything, body reads included.
pub fn perform(
    policy: &FetchPolicy,
    mut out: Outgoing,
    body: OutBody,
    deadline: Instant,
) -> Result<(Head, Incoming), FetchError> {
    let mut streamed = matches!(body, OutBody::Stream(_));
    let mut has_body = !matches!(body, OutBody::None);
    let mut body = Some(body);
    let mut redirects = 0;
    let total = deadline.saturating_duration_since(Instant::now());
    loop {
        check_allowed(policy, &out.url)?;
        let url_s = out.url.to_string();
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timeout(&url_s, total));
        }
        let mut b = ureq::http::Request::builder()
            .method(out.method.as_str())
            .uri(url_s.as_str());
        for (k, v) in &out.headers {
            b = b.header(k.as_str(), v.as_slice());
        }
        let this_body = body.take().unwrap_or(OutBody::None);
        let resent = match &this_body {
            OutBody::Bytes(v) => Some(v.clone()),
            _ => None,
        };
        let resp = match this_body {
            OutBody::None => {
                let req = b.body(()).map_err(|e| FetchError::BadArg(e.to_string()))?;
                run(policy, req, left)
            }
            OutBody::Bytes(v) => {
                let req = b.body(v).map_err(|e| FetchError::BadArg(e.to_string()))?;
                run(policy, req, left)
            }
            OutBody::Stream(r) => {
                let req = b
                    .body(ureq::SendBody::from_owned_reader(r))
                    .map_err(|e| FetchError::BadArg(e.to_string()))?;
                run(policy, req, left)
            }
        }
        .map_err(|e| ureq_error(&url_s, &e, total))?;
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get("location")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        if let (true, Some(loc)) = (policy::is_redirect(status), location) {
            match out.redirect {
                RedirectMode::Manual => {}
                RedirectMode::Error => return Err(FetchError::RedirectModeError(url_s)),
                RedirectMode::Follow => {
                    let hop = policy::next_hop(
                        &out.url,
                        status,
                        &loc,
                        &out.method,
                        has_body,
                        streamed,
                        redirects,
                    )
                    .map_err(|err| FetchError::Redirect {
                        url: url_s.clone(),
                        err,
                    })?;
                    drop(resp);
                    redirects += 1;
                    // next_hop refused to resend a streamed body, so only bytes remain.
                    body = if hop.drop_body {
                        // Later hops have no body: a further 30x may be followed.
                        has_body = false;
                        streamed = false;
                        None
                    } else {
                        resent.map(OutBody::Bytes)
                    };
                    apply_hop(&mut out, hop);
                    continue;
                }
            }
        }
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.as_bytes().to_vec()))
            .collect();
        let content_length = resp
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok()?.trim().parse().ok());
        if content_length.is_some_and(|n: u64| n > policy.max_response_size) {
            return Err(FetchError::ResponseTooLarge {
                url: url_s,
                limit: policy.max_response_size,
            });
        }
        let reader = resp.into_body().into_reader();
        let head = Head {
            status,
            headers,
            url: out.url.clone(),
            redirected: redirects > 0,
            content_length,
        };
        let incoming = Incoming {
            body: Some(reader),
            read: 0,
            limit: policy.max_response_size,
            url: url_s,
            deadline,
            timeout: total,
        };
        return Ok((head, incoming));
    }
}

fn apply_hop(out: &mut Outgoing, hop: NextHop) {
    if hop.drop_body {
        out.headers.retain(|(k, _)| !policy::is_body_header(k));
    }
    if hop.drop_authorization {
        out.headers
            .retain(|(k, _)| !k.eq_ignore_ascii_case("authorization"));
    }
    out.method = hop.method;
    out.url = hop.url;
}

fn run(
    policy: &FetchPolicy,
    req: ureq::http::Request<impl ureq::AsSendBody>,
    left: Duration,
) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
    let a = agent();
    let req = a
        .configure_request(req)
        .timeout_global(Some(left))
        .timeout_connect(Some(policy.connect_timeout.min(left)))
        .build();
    a.run(req)
}

/// Drops header fields the host controls.
pub fn keep_header(name: &str) -> bool {
    // Host is the origin's (from the URL); the rest, crate::request::HOP_BY_HOP, is the
    // client's own framing: a guest cannot smuggle a second request into the connection.
    !name.eq_ignore_ascii_case("host")
        && !crate::request::HOP_BY_HOP
            .iter()
            .any(|h| h.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_headers_are_host_controlled() {
        for h in [
            "Host",
            "content-length",
            "Transfer-Encoding",
            "connection",
            "TE",
        ] {
            assert!(!keep_header(h), "{h}");
        }
        for h in ["authorization", "content-type", "x-custom", "accept"] {
            assert!(keep_header(h), "{h}");
        }
    }

    #[test]
    fn forbidden_origins_fail_before_any_connection() {
        let p = FetchPolicy::default();
        let out = Outgoing {
            method: "GET".into(),
            url: Url::parse("http://127.0.0.1:1/x").unwrap(),
            headers: Vec::new(),
            redirect: RedirectMode::Follow,
        };
        let e = perform(
            &p,
            out,
            OutBody::None,
            Instant::now() + Duration::from_secs(1),
        )
        .err()
        .unwrap();
        assert!(matches!(e, FetchError::NotAllowed { .. }), "{e}");
        assert!(e
            .to_string()
            .starts_with("fetch to http://127.0.0.1:1/x is not allowed"));
    }

    #[test]
    fn a_redirect_after_a_303_that_dropped_a_streamed_body_is_followed() {
        use std::io::Write;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for answer in [
                "HTTP/1.1 303 See Other\r\nLocation: /b\r\nContent-Length: 0\r\n\r\n",
                "HTTP/1.1 302 Found\r\nLocation: /c\r\nContent-Length: 0\r\n\r\n",
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            ] {
                let (mut s, _) = l.accept().unwrap();
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let n = s.read(&mut buf).unwrap();
                    got.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&got);
                    let chunked = text.to_ascii_lowercase().contains("transfer-encoding");
                    if n == 0
                        || (text.contains("\r\n\r\n") && (!chunked || text.ends_with("0\r\n\r\n")))
                    {
                        break;
                    }
                }
                let text = String::from_utf8_lossy(&got).into_owned();
                lines.push(text.lines().next().unwrap_or("").to_owned());
                s.write_all(answer.as_bytes()).unwrap();
            }
            lines
        });
        let origin = format!("http://127.0.0.1:{port}");
        let p = FetchPolicy {
            allow: vec![super::super::Origin::parse(&origin).unwrap()],
            ..Default::default()
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        let (w, r) = super::super::pipe::pipe(deadline);
        w.write(b"data", deadline).unwrap();
        w.end();
        let out = Outgoing {
            method: "POST".into(),
            url: Url::parse(&format!("{origin}/a")).unwrap(),
            headers: vec![("content-type".into(), b"text/plain".to_vec())],
            redirect: RedirectMode::Follow,
        };
        let (head, mut body) = perform(&p, out, OutBody::Stream(r), deadline).unwrap();
        assert_eq!(head.status, 200);
        assert!(head.redirected);
        assert_eq!(head.url.path(), "/c");
        let mut b = [0u8; 8];
        assert_eq!(body.read(&mut b).unwrap(), 2);
        let lines = server.join().unwrap();
        assert_eq!(
            lines,
            ["POST /a HTTP/1.1", "GET /b HTTP/1.1", "GET /c HTTP/1.1"]
        );
    }
}
