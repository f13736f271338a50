//! Streamed response bodies ([`super::Body::Stream`]): what the app's ReadableStream made is
//! taken from the JS side (runtime.js `streamTake`) each time the event loop runs dry, or
//! sooner when it reached its high-water mark (runtime.js `pump` then waits for the take,
//! so a stream that produces without a timer gap is sent as it is made).

use super::{js_failure, natives, Engine, Failure, Heap, HttpResponse};
use rquickjs::{Array, Object, Persistent, TypedArray, Value};

/// `streamTake` state: more of the body is to come.
const STREAM_PENDING: i32 = 0;
/// `streamTake` state: the body ended cleanly (any other state: it failed).
const STREAM_ENDED: i32 = 1;

/// What a take says about the streamed body.
#[derive(Debug)]
pub(super) enum TakeState {
    /// More of the body is to come.
    Pending,
    /// The body ended cleanly.
    Ended,
    /// The app's stream failed (the JS side logged why): the response a throwing handler
    /// would get, for when the head has not left yet.
    Failed(HttpResponse),
}

impl Engine {
    /// Takes what the streamed body made since the last take, as `map` of its bytes, and
    /// the stream's state.
    pub(super) fn stream_take<'js, T>(
        ctx: &rquickjs::Ctx<'js>,
        glue: &Persistent<Object<'static>>,
        heap: &Heap,
        map: impl FnOnce(&[u8]) -> T,
    ) -> Result<(Option<T>, TakeState), Failure> {
        let other = |e: rquickjs::Error| js_failure(ctx, heap, e);
        let arr: Array = Self::call_glue(ctx, glue, heap, "streamTake", ())?;
        let bytes: Value = arr.get(0).map_err(other)?;
        let state = match arr.get::<i32>(1).map_err(other)? {
            STREAM_PENDING => TakeState::Pending,
            STREAM_ENDED => TakeState::Ended,
            _ => {
                let res: Array = arr.get(2).map_err(other)?;
                let status: i32 = res.get(0).map_err(other)?;
                let flat: Vec<String> = res.get(1).map_err(other)?;
                let text: String = res.get(2).map_err(other)?;
                let mut r = HttpResponse::text(u16::try_from(status).unwrap_or(500), &text);
                r.headers = flat
                    .chunks_exact(2)
                    .map(|c| (c[0].clone(), c[1].clone()))
                    .collect();
                TakeState::Failed(r)
            }
        };
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

    /// Runs promise jobs until none is left or the streamed body reached its high-water
    /// mark (its reader then waits for a take while other jobs may still be pending).
    pub(super) fn run_stream_jobs(&self) -> Result<(), Failure> {
        let glue = self.glue.clone();
        let heap = self.heap.clone();
        self.run_jobs_until(|| {
            self.ctx
                .with(|ctx| Self::call_glue::<bool>(&ctx, &glue, &heap, "streamFull", ()))
                .unwrap_or(false)
        })
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
            if let Err(f) = self.run_stream_jobs() {
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
                Ok((_, TakeState::Ended)) => return true,
                Ok((_, TakeState::Pending)) => {}
                // The app's stream failed; the JS side said why.
                Ok((_, TakeState::Failed(_))) => return false,
            }
            // The take let a full stream's reader go on (or the loop stopped at the
            // high-water mark with jobs left): run them before waiting on a timer.
            if self.rt.is_job_pending() {
                continue;
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
    if (path === "/early") return new Response(new ReadableStream({ start(c) { c.error(new Error("early")); } }));
    if (path === "/big-ready") return new Response(new ReadableStream({ start(c) { c.enqueue(new Uint8Array(200000)); c.close(); } }));
    if (path === "/sync") {
      // 64 chunks of 16 KiB, each pull enqueues at once: no timer gap anywhere.
      let n = 0;
      return new Response(new ReadableStream({ pull(c) { c.enqueue(new Uint8Array(16384).fill(n % 251)); if (++n === 64) c.close(); } }));
    }
    let i = 0;
    return new Response(new ReadableStream({
      async pull(c) {
        if (i > 0) await sleep(5);
        if (path === "/fail" && i === 1) throw new Error("broken");
        if (path === "/bad" && i === 1) { c.enqueue("not bytes"); return; }
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
        // One directory per engine: the tests run in parallel, and a main.js rewritten
        // (truncated, then filled) while another test loads it reads as an empty app.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("kvmjs-engine-stream-{}-{n}", std::process::id()));
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

    #[test]
    fn a_stream_without_timer_gaps_leaves_in_bounded_parts() {
        let mut e = engine();
        let Body::Stream(start) = get(&mut e, "/sync") else {
            panic!("not streamed")
        };
        let mut sizes = vec![start.len()];
        let mut all = start;
        assert!(e.stream_body(|b| {
            sizes.push(b.len());
            all.extend_from_slice(b);
        }));
        assert_eq!(all.len(), 64 * 16384);
        for (i, c) in all.chunks(16384).enumerate() {
            assert!(c.iter().all(|&b| b == (i % 251) as u8), "chunk {i}");
        }
        // Backpressure: no part holds more than the high-water mark and two chunks.
        assert!(sizes.len() >= 8, "{sizes:?}");
        assert!(sizes.iter().all(|&n| n <= 65536 + 2 * 16384), "{sizes:?}");
        // A big body complete before the first take still leaves whole.
        assert_eq!(get(&mut e, "/big-ready"), Body::Bytes(vec![0; 200000]));
    }

    #[test]
    fn a_stream_failing_before_the_head_is_a_500() {
        let mut e = engine();
        let r = e.handle_streaming(&HttpRequest {
            method: "GET".into(),
            url: "http://localhost/early".into(),
            headers: vec![],
            body: None,
        });
        assert_eq!(r.status, 500);
        assert_eq!(
            r.body,
            Body::Text("Internal Server Error: Error: early\n".into())
        );
        assert_eq!(get(&mut e, "/static"), Body::Text("static".into()));
    }
}
