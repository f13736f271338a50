//! Host-side request and response: what crosses the guest ABI, without HTTP.

/// Header fields that belong to one connection, not to the message (hop-by-hop, RFC 9110
/// §7.6.1), and the body framing the host always sets itself. Whichever way a message
/// crosses the host (a request into a listening guest, a guest's response, a guest's
/// fetch()), the other side's values for these are dropped, so a guest can neither
/// smuggle a second message into a connection nor see the client's connection details.
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

/// A request to hand to the guest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    /// HTTP method.
    pub method: String,
    /// URL (path and query, or absolute).
    pub url: String,
    /// Extra argument (VCL `config`).
    pub arg: String,
    /// Content-Type of the body.
    pub content_type: String,
    /// Header fields as `"Name: value"`.
    pub headers: Vec<String>,
    /// Body.
    pub body: Vec<u8>,
    /// Whether this is a warm-up request.
    pub warmup: bool,
}

impl Request {
    /// A GET of `url` with no headers.
    pub fn get(url: &str) -> Self {
        Request {
            method: "GET".into(),
            url: url.into(),
            ..Default::default()
        }
    }

    /// The request a configured warm-up sends (before the snapshot, in either mode).
    pub fn warmup(w: &crate::config::Warmup) -> Self {
        Request {
            method: w.method.clone(),
            url: w.url.clone(),
            headers: w.headers.clone(),
            warmup: true,
            ..Default::default()
        }
    }
}

/// The guest's answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Response {
    /// Status code (100..=599).
    pub status: u16,
    /// Content-Type.
    pub content_type: Vec<u8>,
    /// Body.
    pub body: Vec<u8>,
    /// Extra header fields as `"Name: value"`.
    pub headers: Vec<Vec<u8>>,
    /// The guest asked to continue after the response ([`kvmjs_abi::RESPONSE_FLAG_CONTINUE`]):
    /// it has background work to finish before the VM is reset.
    pub background: bool,
    /// The body is only the start: the guest streams the rest
    /// ([`kvmjs_abi::RESPONSE_FLAG_STREAM`]), which [`crate::Vm::stream_next`] returns
    /// chunk by chunk. Sent without a length (HTTP/1.1 chunked).
    pub stream: bool,
}

/// One step of a streamed response, as the guest's stream calls report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamStep {
    /// `stream_append`: more body.
    Chunk(Vec<u8>),
    /// `stream_end`.
    End {
        /// It failed mid-stream: the client must see a truncated response.
        abort: bool,
        /// Background work follows ([`kvmjs_abi::RESPONSE_FLAG_CONTINUE`]).
        background: bool,
    },
}

/// Counters for one request.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RequestStats {
    /// KVM_RUN returns (VM exits seen by the host).
    pub exits: u64,
    /// Of those, Linux system calls.
    pub syscalls: u64,
    /// Pages restored by the reset.
    pub dirty_pages: u64,
    /// Time spent resetting, µs.
    pub reset_us: f64,
    /// Time from request start to response (and reset), µs.
    pub total_us: f64,
}

/// Errors placing a request in guest memory.
#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    /// Too big for the request area or the ABI's u16 lengths.
    #[error("request too large: {0}")]
    TooLarge(String),
    /// The guest's request buffer is not in guest memory.
    #[error("guest request buffer is unusable: {0}")]
    BadBuffer(#[from] crate::memory::MemoryError),
}

fn len16(what: &str, n: usize) -> Result<u16, PlaceError> {
    u16::try_from(n).map_err(|_| {
        PlaceError::TooLarge(format!("{what} is {n} bytes; the guest ABI allows 65535"))
    })
}

/// Writes `req` into the request area `[area.0, area.1)` and its 104-byte `kvm_request`
/// at `req_ptr`, as libvmod-tinykvm lays it out (NUL-terminated strings, header table).
pub(crate) fn place(
    mem: &mut crate::memory::GuestMemory,
    area: (u64, u64),
    req_ptr: u64,
    req: &Request,
    prng: [u64; 2],
) -> Result<(), PlaceError> {
    let mut cur = area.0;
    let mut put = |mem: &mut crate::memory::GuestMemory,
                   bytes: &[u8],
                   nul: bool,
                   align: u64|
     -> Result<u64, PlaceError> {
        cur = (cur + align - 1) & !(align - 1);
        let len = bytes.len() as u64 + u64::from(nul);
        if cur + len > area.1 {
            return Err(PlaceError::TooLarge(format!(
                "it needs more than the {}-byte request area",
                area.1 - area.0
            )));
        }
        let at = cur;
        mem.write(at, bytes)?;
        if nul {
            mem.write(at + bytes.len() as u64, &[0])?;
        }
        cur += len;
        Ok(at)
    };
    let method = put(mem, req.method.as_bytes(), true, 1)?;
    let url = put(mem, req.url.as_bytes(), true, 1)?;
    let arg = put(mem, req.arg.as_bytes(), true, 1)?;
    let ctype = put(mem, req.content_type.as_bytes(), true, 1)?;
    let num_headers = len16("the header count", req.headers.len())?;
    let mut table = Vec::with_capacity(req.headers.len() * 16);
    for h in &req.headers {
        let at = put(mem, h.as_bytes(), true, 1)?;
        let colon = h.find(':').unwrap_or(h.len()) as u32;
        table.extend(at.to_le_bytes());
        table.extend(colon.to_le_bytes());
        table.extend((h.len() as u32).to_le_bytes());
    }
    let headers = put(mem, &table, false, 16)?;
    let content = if req.body.is_empty() {
        0
    } else {
        put(mem, &req.body, false, 16)?
    };
    let mut s = [0u8; 104];
    let mut w = |off: usize, b: &[u8]| s[off..off + b.len()].copy_from_slice(b);
    w(0, &method.to_le_bytes());
    w(8, &url.to_le_bytes());
    w(16, &arg.to_le_bytes());
    w(24, &ctype.to_le_bytes());
    w(32, &len16("the method", req.method.len())?.to_le_bytes());
    w(34, &len16("the URL", req.url.len())?.to_le_bytes());
    w(36, &len16("the argument", req.arg.len())?.to_le_bytes());
    w(
        38,
        &len16("the content type", req.content_type.len())?.to_le_bytes(),
    );
    w(40, &content.to_le_bytes());
    w(48, &(req.body.len() as u64).to_le_bytes());
    w(56, &headers.to_le_bytes());
    w(64, &num_headers.to_le_bytes());
    w(66, &u16::from(req.warmup).to_le_bytes());
    w(72, &prng[0].to_le_bytes());
    w(80, &prng[1].to_le_bytes());
    mem.write(req_ptr, &s)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::GuestMemory;

    #[test]
    fn request_is_laid_out_like_kvm_request() {
        let mut mem = GuestMemory::new(16 << 20, false).unwrap();
        let req = Request {
            method: "POST".into(),
            url: "/x?y=1".into(),
            content_type: "text/plain".into(),
            headers: vec!["Host: a".into(), "X-B: c".into()],
            body: b"data".to_vec(),
            ..Default::default()
        };
        place(&mut mem, (0x10_0000, 0x20_0000), 0x8000, &req, [1, 2]).unwrap();
        let p = |off: u64| mem.read_u64(0x8000 + off).unwrap();
        assert_eq!(mem.read_cstr(p(0), 10).unwrap(), b"POST");
        assert_eq!(mem.read_cstr(p(8), 10).unwrap(), b"/x?y=1");
        assert_eq!(mem.read_u16(0x8000 + 34).unwrap(), 6);
        assert_eq!(mem.slice(p(40), 4).unwrap(), b"data");
        assert_eq!(p(48), 4);
        let h1 = p(56) + 16;
        assert_eq!(
            mem.read_cstr(mem.read_u64(h1).unwrap(), 10).unwrap(),
            b"X-B: c"
        );
        assert_eq!(mem.read_u32(h1 + 8).unwrap(), 3);
        assert_eq!(mem.read_u16(0x8000 + 64).unwrap(), 2);
        assert_eq!((p(72), p(80)), (1, 2));
    }

    #[test]
    fn oversized_requests_are_refused() {
        let mut mem = GuestMemory::new(16 << 20, false).unwrap();
        let big = Request {
            body: vec![0; 0x2000],
            ..Request::get("/")
        };
        assert!(matches!(
            place(&mut mem, (0x10_0000, 0x10_1000), 0x8000, &big, [0; 2]),
            Err(PlaceError::TooLarge(_))
        ));
        let long_url = Request::get(&"a".repeat(70_000));
        assert!(place(&mut mem, (0x10_0000, 0x20_0000), 0x8000, &long_url, [0; 2]).is_err());
        assert!(matches!(
            place(
                &mut mem,
                (0x10_0000, 0x20_0000),
                u64::MAX - 8,
                &Request::get("/"),
                [0; 2]
            ),
            Err(PlaceError::BadBuffer(_))
        ));
    }
}
