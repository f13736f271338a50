//! Streamed response bodies ([`super::Body::Stream`]): what the app's ReadableStream made is
//! taken from the JS side (runtime.js `streamTake`) each time the event loop runs dry.

use super::{js_failure, natives, Engine, Failure, Heap};
use rquickjs::{Array, Object, Persistent, TypedArray, Value};

/// `streamTake` state: more of the body is to come.
pub(super) const STREAM_PENDING: i32 = 0;
/// `streamTake` state: the body ended cleanly (any other state: it failed).
pub(super) const STREAM_ENDED: i32 = 1;

impl Engine {
    /// Takes what the streamed body made since the last take, as `map` of its bytes, and
    /// the stream's state (`STREAM_*`).
    pub(super) fn stream_take<'js, T>(
        ctx: &rquickjs::Ctx<'js>,
        glue: &Persistent<Object<'static>>,
        heap: &Heap,
        map: impl FnOnce(&[u8]) -> T,
    ) -> Result<(Option<T>, i32), Failure> {
        let other = |e: rquickjs::Error| js_failure(ctx, heap, e);
        let arr: Array = Self::call_glue(ctx, glue, heap, "streamTake", ())?;
        let bytes: Value = arr.get(0).map_err(other)?;
        let state: i32 = arr.get(1).map_err(other)?;
        let out = if bytes.is_null() {
            None
        } else {
            let t = TypedArray::<u8>::from_value(bytes).map_err(other)?;
            // SAFETY: the array is alive for this scope and no JS runs while `map` reads.
            let b = unsafe { t.as_bytes() }.unwrap_or_default();
            Some(map(b))
        };
        Ok((out, state))
    }

    /// Produces the rest of a [`super::Body::Stream`]: runs the app's event loop (jobs, timers)
    /// and calls `send` with the bytes made each time the loop runs dry, so chunks made
    /// together leave together. Returns whether the stream ended cleanly (`false`: it
    /// failed, and the response must end abnormally). The CPU limit is the handler's and
    /// does not apply here; the host's max_request_time bounds the stream.
    pub fn stream_body(&mut self, mut send: impl FnMut(&[u8])) -> bool {
        let glue = self.glue.clone();
        let heap = self.heap.clone();
        let fail = |f: Failure| {
            let msg = match f {
                Failure::OutOfMemory => "out of memory".to_string(),
                Failure::CpuLimit => "CPU time limit exceeded".to_string(),
                Failure::NeverSettles => "it never ends".to_string(),
                Failure::Other(m) => m,
            };
            natives::log(
                3,
                &format!("the streamed response failed: {msg}"),
                self.host_timeout,
            );
            false
        };
        loop {
            if let Err(f) = self.run_jobs() {
                return fail(f);
            }
            let taken = self.ctx.with(|ctx| {
                Self::stream_take(&ctx, &glue, &heap, |b| {
                    if !b.is_empty() {
                        send(b);
                    }
                })
            });
            match taken {
                Err(f) => return fail(f),
                Ok((_, STREAM_ENDED)) => return true,
                Ok((_, STREAM_PENDING)) => {}
                // The app's stream failed; the JS side said why.
                Ok(_) => return false,
            }
            if let Err(f) = self.next_turn() {
                return fail(f);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{clock::Clock, Body, Engine, HttpRequest};
    use crate::options::Options;

    const APP: &str = r#"
const enc = new TextEncoder();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export default {
  async fetch(req) {
    const path = new URL(req.url).pathname;
    if (path === "/ready") {
      return new Response(new ReadableStream({ start(c) { c.enqueue(enc.encode("a")); c.enqueue(enc.encode("b")); c.close(); } }));
    }
    if (path === "/static") return new Response("static");
    let i = 0;
    return new Response(new ReadableStream({
      async pull(c) {
        if (path === "/fail" && i === 1) throw new Error("broken");
        if (path === "/bad" && i === 1) { c.enqueue("not bytes"); return; }
        if (i > 0) await sleep(5);
        // Two chunks made together at each step: they leave together.
        c.enqueue(enc.encode(`${i}a`));
        c.enqueue(enc.encode(`${i}b `));
        if (++i === 3) c.close();
      },
    }));
  },
};
"#;

    fn engine() -> Engine {
        let dir = std::env::temp_dir().join(format!("kvmjs-engine-stream-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let app = dir.join("main.js");
        std::fs::write(&app, APP).unwrap();
        let app = app.to_string_lossy().into_owned();
        let opts = Options::parse([app.clone()]).unwrap();
        let mut e = Engine::new(opts, Clock::from_env(), 0.0, false).unwrap();
        e.load_app(&app, &[]).unwrap_or_else(|m| panic!("{m}"));
        e
    }

    fn get(e: &mut Engine, path: &str) -> Body {
        e.handle_streaming(&HttpRequest {
            method: "GET".into(),
            url: format!("http://localhost{path}"),
            headers: vec![],
            body: None,
        })
        .body
    }

    fn rest(e: &mut Engine) -> (Vec<String>, bool) {
        let mut parts = Vec::new();
        let ok = e.stream_body(|b| parts.push(String::from_utf8_lossy(b).into_owned()));
        (parts, ok)
    }

    #[test]
    fn complete_bodies_are_whole_and_pending_streams_come_in_batches() {
        let mut e = engine();
        assert_eq!(get(&mut e, "/static"), Body::Text("static".into()));
        assert_eq!(get(&mut e, "/ready"), Body::Bytes(b"ab".to_vec()));
        assert_eq!(get(&mut e, "/stream"), Body::Stream(b"0a0b ".to_vec()));
        assert_eq!(rest(&mut e), (vec!["1a1b ".into(), "2a2b ".into()], true));
        // Plain handle() reads the same stream whole.
        let whole = e.handle(&HttpRequest {
            method: "GET".into(),
            url: "http://localhost/stream".into(),
            headers: vec![],
            body: None,
        });
        assert_eq!(whole.body.as_bytes(), b"0a0b 1a1b 2a2b ");
    }

    #[test]
    fn a_failing_stream_ends_abnormally() {
        let mut e = engine();
        for path in ["/fail", "/bad"] {
            assert_eq!(get(&mut e, path), Body::Stream(b"0a0b ".to_vec()), "{path}");
            let (parts, ok) = rest(&mut e);
            assert!(!ok, "{path}: {parts:?}");
            assert!(parts.is_empty(), "{path}: {parts:?}");
        }
        // The engine serves on.
        assert_eq!(get(&mut e, "/static"), Body::Text("static".into()));
    }
}
