//! What a program may fetch: its allowed origins and limits (tinykvm.json `fetch`), and the
//! Fetch Standard's redirect rules ("HTTP-redirect fetch"), as pure functions.

use std::time::Duration;
use url::Url;

/// Errors in a `fetch.allow` entry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OriginError {
    /// Not a URL.
    #[error("'{0}' is not a URL; write an origin such as https://api.example.com or http://127.0.0.1:8081")]
    NotUrl(String),
    /// Not http or https.
    #[error("'{0}' is not an http or https origin; only http:// and https:// can be fetched")]
    Scheme(String),
    /// Has a path, query, fragment or credentials.
    #[error("'{0}' is more than an origin: drop the path, query, fragment and credentials (scheme://host[:port])")]
    NotOrigin(String),
}

/// A tuple origin: scheme, host and port (the default port filled in).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// `http` or `https`.
    pub scheme: String,
    /// Host as the URL parser serializes it (lower case, IPv6 in brackets).
    pub host: String,
    /// Port, the scheme's default when not given.
    pub port: u16,
}

impl Origin {
    /// Parses an allow-list entry: `scheme://host[:port]`, a trailing `/` allowed.
    pub fn parse(s: &str) -> Result<Origin, OriginError> {
        let u = Url::parse(s).map_err(|_| OriginError::NotUrl(s.into()))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(OriginError::Scheme(s.into()));
        }
        if u.path() != "/"
            || u.query().is_some()
            || u.fragment().is_some()
            || !u.username().is_empty()
            || u.password().is_some()
        {
            return Err(OriginError::NotOrigin(s.into()));
        }
        Origin::of(&u).ok_or_else(|| OriginError::NotUrl(s.into()))
    }

    /// The origin of an http(s) URL; `None` for other schemes.
    pub fn of(u: &Url) -> Option<Origin> {
        if !matches!(u.scheme(), "http" | "https") {
            return None;
        }
        Some(Origin {
            scheme: u.scheme().into(),
            host: u.host_str()?.to_ascii_lowercase(),
            port: u.port_or_known_default()?,
        })
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// One program's fetch settings (`VmConfig::fetch`). The default allows nothing.
#[derive(Clone, Debug)]
pub struct FetchPolicy {
    /// Origins the guest may fetch (each redirect hop is checked too).
    pub allow: Vec<Origin>,
    /// Time allowed to connect.
    pub connect_timeout: Duration,
    /// Time allowed for one fetch, from start to the end of its response body (the
    /// request's own deadline still applies).
    pub timeout: Duration,
    /// Largest response body (bytes).
    pub max_response_size: u64,
    /// Largest request body (bytes).
    pub max_request_body: u64,
    /// Most fetches one request may have open at once.
    pub max_open: usize,
    /// Most fetches one request may start in all.
    pub max_per_request: usize,
    /// Counters shared by all VMs of the program.
    pub metrics: std::sync::Arc<super::FetchMetrics>,
}

impl Default for FetchPolicy {
    fn default() -> Self {
        FetchPolicy {
            allow: Vec::new(),
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(30),
            max_response_size: 16 << 20,
            max_request_body: 16 << 20,
            max_open: 16,
            max_per_request: 256,
            metrics: Default::default(),
        }
    }
}

impl FetchPolicy {
    /// Whether `u` may be fetched.
    pub fn allows(&self, u: &Url) -> bool {
        Origin::of(u).is_some_and(|o| self.allow.contains(&o))
    }
}

/// Fetch's redirect mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedirectMode {
    /// Follow up to [`MAX_REDIRECTS`].
    Follow,
    /// Return the redirect response.
    Manual,
    /// A redirect is a network error.
    Error,
}

/// Fetch's redirect limit.
pub const MAX_REDIRECTS: usize = 20;

/// Whether `status` is a redirect status.
pub fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

/// The request to send after a redirect.
#[derive(Debug, PartialEq, Eq)]
pub struct NextHop {
    /// Where to.
    pub url: Url,
    /// The method (POST becomes GET for 301/302, anything but HEAD for 303).
    pub method: String,
    /// The body is dropped (and with it the body headers).
    pub drop_body: bool,
    /// The Authorization header is dropped (a cross-origin hop).
    pub drop_authorization: bool,
}

/// Why a redirect cannot be followed (a network error).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RedirectError {
    /// Location does not parse.
    #[error("the redirect Location '{0}' is not a valid URL")]
    BadLocation(String),
    /// Not http(s).
    #[error("the redirect to '{0}' is not http or https")]
    Scheme(String),
    /// More than 20.
    #[error("more than {MAX_REDIRECTS} redirects")]
    TooMany,
    /// A streamed body cannot be sent again.
    #[error(
        "a {0} redirect would resend the request body, which was a stream and cannot be replayed"
    )]
    StreamBody(u16),
}

/// Fetch "HTTP-redirect fetch" for a `status` response with `location` to a request
/// `method` at `current` that has a body (`has_body`, `streamed`: its source is a stream).
/// `redirects` is the count so far.
pub fn next_hop(
    current: &Url,
    status: u16,
    location: &str,
    method: &str,
    has_body: bool,
    streamed: bool,
    redirects: usize,
) -> Result<NextHop, RedirectError> {
    let url = current
        .join(location)
        .map_err(|_| RedirectError::BadLocation(location.into()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(RedirectError::Scheme(url.to_string()));
    }
    if redirects >= MAX_REDIRECTS {
        return Err(RedirectError::TooMany);
    }
    let to_get = ((status == 301 || status == 302) && method == "POST")
        || (status == 303 && method != "GET" && method != "HEAD");
    if has_body && streamed && !to_get {
        return Err(RedirectError::StreamBody(status));
    }
    let mut url = url;
    if url.fragment().is_none() {
        // A Location without a fragment inherits the request's (Fetch: "location URL").
        url.set_fragment(current.fragment());
    }
    Ok(NextHop {
        drop_authorization: Origin::of(current) != Origin::of(&url),
        method: if to_get { "GET".into() } else { method.into() },
        drop_body: to_get,
        url,
    })
}

/// Request-body header names dropped with the body (Fetch "request-body-header name").
pub fn is_body_header(name: &str) -> bool {
    [
        "content-encoding",
        "content-language",
        "content-location",
        "content-type",
        "content-length",
    ]
    .iter()
    .any(|h| h.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn origins_parse_strictly() {
        let o = Origin::parse("https://API.example.com").unwrap();
        assert_eq!(
            (o.scheme.as_str(), o.host.as_str(), o.port),
            ("https", "api.example.com", 443)
        );
        assert_eq!(Origin::parse("http://127.0.0.1:8081/").unwrap().port, 8081);
        assert!(matches!(
            Origin::parse("ftp://x"),
            Err(OriginError::Scheme(_))
        ));
        assert!(matches!(
            Origin::parse("http://x/path"),
            Err(OriginError::NotOrigin(_))
        ));
        assert!(matches!(
            Origin::parse("http://u:p@x"),
            Err(OriginError::NotOrigin(_))
        ));
        assert!(matches!(
            Origin::parse("nonsense"),
            Err(OriginError::NotUrl(_))
        ));
    }

    #[test]
    fn allow_list_matches_scheme_host_and_port() {
        let p = FetchPolicy {
            allow: vec![
                Origin::parse("http://127.0.0.1:8081").unwrap(),
                Origin::parse("https://api.example.com").unwrap(),
            ],
            ..Default::default()
        };
        assert!(p.allows(&u("http://127.0.0.1:8081/x?y")));
        assert!(p.allows(&u("https://api.example.com:443/")));
        assert!(!p.allows(&u("http://127.0.0.1:8082/")));
        assert!(!p.allows(&u("https://127.0.0.1:8081/")));
        assert!(!p.allows(&u("http://api.example.com/")));
        assert!(!p.allows(&u("https://evil.example.com/")));
        assert!(!FetchPolicy::default().allows(&u("http://127.0.0.1:8081/")));
    }

    #[test]
    fn redirects_change_method_per_fetch() {
        let cur = u("http://a.test/x#frag");
        let h = next_hop(&cur, 302, "/y", "POST", true, false, 0).unwrap();
        assert_eq!(
            (h.url.as_str(), h.method.as_str(), h.drop_body),
            ("http://a.test/y#frag", "GET", true)
        );
        let h = next_hop(&cur, 303, "http://b.test/", "PUT", true, false, 0).unwrap();
        assert_eq!(
            (h.method.as_str(), h.drop_body, h.drop_authorization),
            ("GET", true, true)
        );
        let h = next_hop(&cur, 303, "/z", "HEAD", false, false, 0).unwrap();
        assert_eq!(h.method, "HEAD");
        let h = next_hop(&cur, 307, "/z", "POST", true, false, 0).unwrap();
        assert_eq!((h.method.as_str(), h.drop_body), ("POST", false));
        let h = next_hop(&cur, 301, "/z", "PUT", true, false, 0).unwrap();
        assert_eq!((h.method.as_str(), h.drop_body), ("PUT", false));
    }

    #[test]
    fn redirect_failures() {
        let cur = u("http://a.test/");
        assert_eq!(
            next_hop(&cur, 302, "/y", "GET", false, false, MAX_REDIRECTS),
            Err(RedirectError::TooMany)
        );
        assert!(next_hop(&cur, 302, "/y", "GET", false, false, MAX_REDIRECTS - 1).is_ok());
        assert!(matches!(
            next_hop(&cur, 302, "file:///etc/passwd", "GET", false, false, 0),
            Err(RedirectError::Scheme(_))
        ));
        assert!(matches!(
            next_hop(&cur, 302, "http://[::1", "GET", false, false, 0),
            Err(RedirectError::BadLocation(_))
        ));
        assert_eq!(
            next_hop(&cur, 307, "/y", "POST", true, true, 0),
            Err(RedirectError::StreamBody(307))
        );
        // A streamed POST body may be dropped by a 303.
        assert!(next_hop(&cur, 303, "/y", "POST", true, true, 0).is_ok());
        assert!(is_redirect(308) && !is_redirect(304));
        assert!(is_body_header("Content-Type") && !is_body_header("authorization"));
    }
}
