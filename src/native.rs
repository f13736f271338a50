//! The same engine outside any VM, serving HTTP/1.1 itself: the benchmark's "plain
//! process" comparator (no isolation) and, with `--fork`, its "fork per request"
//! comparator (each request runs in a copy-on-write child of the warm process). Minimal
//! on purpose: keep-alive, Content-Length bodies, one write per response.

use crate::engine::{Engine, HttpRequest, HttpResponse};
use std::borrow::Cow;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

/// Largest request head or body accepted.
const MAX_REQUEST: usize = 16 << 20;

struct Parsed {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    close: bool,
}

/// Reads one request from `s` (`buf` carries bytes already read past the last one).
fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Parsed> {
    let mut chunk = [0u8; 16384];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut req = httparse::Request::new(&mut headers);
        if let Ok(httparse::Status::Complete(head_len)) = req.parse(buf) {
            let method = req.method.unwrap_or("GET").to_string();
            let path = req.path.unwrap_or("/").to_string();
            let mut len = 0;
            let mut close = req.version == Some(0);
            let mut hs = Vec::with_capacity(req.headers.len());
            for h in req.headers.iter() {
                let v = String::from_utf8_lossy(h.value).into_owned();
                if h.name.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
                if h.name.eq_ignore_ascii_case("connection") {
                    close = v.eq_ignore_ascii_case("close");
                }
                hs.push((h.name.to_ascii_lowercase(), v));
            }
            if len > MAX_REQUEST {
                return None;
            }
            while buf.len() < head_len + len {
                let n = s.read(&mut chunk).ok().filter(|n| *n > 0)?;
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = buf[head_len..head_len + len].to_vec();
            buf.drain(..head_len + len);
            return Some(Parsed {
                method,
                path,
                headers: hs,
                body,
                close,
            });
        }
        if buf.len() > MAX_REQUEST {
            return None;
        }
        let n = s.read(&mut chunk).ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn respond(engine: &mut Engine, p: &Parsed) -> Vec<u8> {
    let host = p
        .headers
        .iter()
        .find(|(k, _)| k == "host")
        .map(|(_, v)| v.as_str());
    let req = HttpRequest {
        method: Cow::Borrowed(&p.method),
        url: crate::host::absolute_url(&p.path, host),
        headers: p
            .headers
            .iter()
            .map(|(k, v)| (Cow::Borrowed(k.as_str()), Cow::Borrowed(v.as_str())))
            .collect(),
        body: (!p.body.is_empty()).then_some(p.body.as_slice()),
    };
    encode(&engine.handle(&req), p.close)
}

fn encode(r: &HttpResponse, close: bool) -> Vec<u8> {
    let body = r.body.as_bytes();
    let mut out = format!(
        "HTTP/1.1 {} {}\r\n",
        r.status,
        if r.status < 400 { "OK" } else { "Error" }
    )
    .into_bytes();
    for (k, v) in &r.headers {
        if !k.eq_ignore_ascii_case("content-length") {
            out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
    }
    let conn = if close { "close" } else { "keep-alive" };
    out.extend_from_slice(
        format!(
            "content-length: {}\r\nconnection: {conn}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(body);
    out
}

/// Runs `respond` in a child process and waits for it: the parent's engine never changes.
fn respond_forked(engine: &mut Engine, p: &Parsed, s: &mut TcpStream) -> bool {
    // SAFETY: the process is single-threaded, so the child may keep running Rust code.
    match unsafe { libc::fork() } {
        0 => {
            let out = respond(engine, p);
            let ok = s.write_all(&out).is_ok();
            // SAFETY: _exit skips atexit handlers and destructors that belong to the parent.
            unsafe { libc::_exit(i32::from(!ok)) }
        }
        pid if pid > 0 => {
            let mut status = 0;
            // SAFETY: waiting for our own child.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            status == 0
        }
        _ => false,
    }
}

fn connection(engine: &mut Engine, mut s: TcpStream, fork: bool) {
    let _ = s.set_nodelay(true);
    let mut buf = Vec::new();
    while let Some(p) = read_request(&mut s, &mut buf) {
        let ok = if fork {
            respond_forked(engine, &p, &mut s)
        } else {
            let out = respond(engine, &p);
            s.write_all(&out).is_ok()
        };
        if !ok || p.close {
            break;
        }
    }
}

/// Serves connections one at a time, forever.
pub fn serve(engine: &mut Engine, addr: &str, fork: bool) -> Result<(), String> {
    let listener = TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    eprintln!(
        "kvmjs-guest: serving on http://{addr} ({})",
        if fork {
            "fork per request"
        } else {
            "plain process"
        }
    );
    for s in listener.incoming().flatten() {
        connection(engine, s, fork);
    }
    Ok(())
}
