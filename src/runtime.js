// Glue between the host's request loop and the app, evaluated after the Web API prelude:
// handler registration (Workers `export default { fetch }` and `Deno.serve`), building the
// Request, ctx.waitUntil, turning the Response (or an exception) into plain values.
// Everything the host calls lives on `__kvmjs`, which the host removes from globalThis.
(() => {
  const native = globalThis.__native;
  const timers = globalThis.__kvmjsTimers;
  const body = globalThis.__kvmjsBody;
  const loadLazy = globalThis.__kvmjsLazy;
  const performanceHooks = globalThis.__kvmjsPerformance;
  const define = (name, value) =>
    Object.defineProperty(globalThis, name, { value, writable: true, configurable: true, enumerable: false });

  // Math.random: QuickJS's generator state is part of the snapshot, so every request
  // would see the same sequence. xoshiro128** re-keyed by the host for each request.
  const s = new Uint32Array(4);
  native.randomFill(s);
  const rotl = (x, k) => (x << k) | (x >>> (32 - k));
  const next32 = () => {
    const r = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return r;
  };
  Object.defineProperty(Math, "random", {
    value: function random() {
      return ((next32() >>> 5) * 67108864 + (next32() >>> 6)) / 9007199254740992;
    },
    writable: true,
    configurable: true,
    enumerable: false,
  });

  let handler = null;
  let onError = null;
  const env = {};

  const Deno = {
    serve(a, b) {
      let options;
      let fn;
      if (typeof a === "function") {
        fn = a;
        options = b ?? {};
      } else {
        options = a ?? {};
        fn = typeof b === "function" ? b : options.handler;
      }
      if (typeof fn !== "function") throw new TypeError("Deno.serve: a handler function is required");
      if (handler) throw new Error("Deno.serve: a handler is already registered; kvmjs runs one server per program");
      onError = typeof options.onError === "function" ? options.onError : null;
      const info = { remoteAddr: { transport: "tcp", hostname: "127.0.0.1", port: 0 }, completed: Promise.resolve() };
      handler = (req) => fn(req, info);
      const addr = { transport: "tcp", hostname: options.hostname ?? "0.0.0.0", port: options.port ?? 8000 };
      if (typeof options.onListen === "function") options.onListen(addr);
      let done;
      const finished = new Promise((r) => (done = r));
      return {
        finished,
        addr,
        shutdown() {
          done();
          return finished;
        },
        ref() {},
        unref() {},
      };
    },
    env: {
      get: (k) => env[k],
      has: (k) => Object.prototype.hasOwnProperty.call(env, k),
      toObject: () => ({ ...env }),
      set() {
        throw new Error("Deno.env is read-only in kvmjs: configure `environment` instead");
      },
      delete() {
        throw new Error("Deno.env is read-only in kvmjs: configure `environment` instead");
      },
    },
    version: { deno: "kvmjs", v8: "QuickJS-ng", typescript: "" },
    build: { os: "linux", arch: "x86_64", target: "x86_64-unknown-linux-gnu" },
    pid: 1,
    noColor: true,
  };
  define("Deno", Deno);

  const describe = (v) => (v === null ? "null" : Array.isArray(v) ? "an array" : typeof v === "object" ? `an object (${v.constructor?.name ?? "Object"})` : typeof v);

  // Taken before the app runs, which may replace them.
  const toString = String;
  const objectToString = Object.prototype.toString;
  const call = Function.prototype.call.bind(Function.prototype.call);
  const InternalErrorClass = InternalError;
  // A thrown value that is not an Error, as String() shows it.
  const thrownValue = (e) => {
    try {
      return toString(e);
    } catch {
      return call(objectToString, e);
    }
  };

  const errorResult = (e, debug) => {
    // QuickJS throws an InternalError, or null when it cannot allocate even that; an app's
    // `throw null` is told apart by asking whether the heap refused an allocation.
    const oom =
      (e === null && native.heapExhausted()) ||
      (e instanceof InternalErrorClass && e.message === "out of memory");
    let text;
    if (oom) text = "out of memory\n";
    else {
      const summary = e instanceof Error ? `${e.name}: ${e.message}` : `Uncaught ${thrownValue(e)}`;
      text = `Internal Server Error: ${summary.split("\n")[0]}\n`;
      if (debug && e instanceof Error && e.stack) text += e.stack;
    }
    return [500, ["content-type", "text/plain;charset=UTF-8"], text];
  };

  // Streamed response bodies (under the kvmjs host): the app's ReadableStream is read by
  // `pump` into `streaming.chunks` as it produces; the host takes what has accumulated each
  // time the event loop runs dry (streamTake), so chunks made together leave together, and
  // a stream that is complete by then leaves as one whole body. Only the public reader API
  // is used, taken before the app runs.
  const getReader = ReadableStream.prototype.getReader;
  const readerRead = ReadableStreamDefaultReader.prototype.read;
  const readerCancel = ReadableStreamDefaultReader.prototype.cancel;
  const Uint8ArrayClass = Uint8Array;
  let streaming = null;
  // Backpressure: once this much is waiting for the host, pump stops reading until
  // streamTake has handed it over, so a stream that produces without a timer gap (a
  // backend body, blob.stream(), a synchronous pull) is sent as it is made instead of
  // piling up in the heap.
  const STREAM_HIGH_WATER = 65536;
  const pump = async (reader, st) => {
    const add = (value) => {
      // Fetch: a body chunk that is not a Uint8Array is a TypeError.
      if (!(value instanceof Uint8ArrayClass)) {
        const e = new TypeError(`a Response body stream chunk must be a Uint8Array, not ${describe(value)}`);
        call(readerCancel, reader, e).catch(() => {});
        throw e;
      }
      if (value.byteLength !== 0) {
        st.chunks.push(value);
        st.size += value.byteLength;
      }
    };
    try {
      for (;;) {
        let r = await call(readerRead, reader);
        if (r.done) break;
        add(r.value);
        if (st.size < STREAM_HIGH_WATER) continue;
        const taken = new Promise((resolve) => {
          st.resume = resolve;
        });
        // One read ahead before waiting: a body that is complete by now still leaves
        // whole, with a Content-Length.
        r = await call(readerRead, reader);
        if (r.done) break;
        add(r.value);
        if (st.resume !== null) {
          st.full = true;
          await taken;
        }
      }
      st.state = 1;
    } catch (e) {
      console.error("the Response body stream failed; the response is cut short:", e);
      st.error = e;
      st.state = 2;
    }
  };
  const startStream = (stream, debug) => {
    const reader = call(getReader, stream);
    const st = { chunks: [], size: 0, state: 0, resume: null, full: false, error: undefined, debug };
    streaming = st;
    pump(reader, st);
    // null in the body's place: the host asks streamTake for it.
    return null;
  };

  const toResult = async (res, stream, debug) => {
    if (!(res instanceof Response)) throw new TypeError(`the handler returned ${describe(res)} instead of a Response`);
    const flat = [];
    for (const [k, v] of res.headers) flat.push(k, v);
    if (stream) {
      const s = body.stream(res);
      if (s !== null) return [res.status, flat, startStream(s, debug)];
    }
    return [res.status, flat, await body.bytes(res)];
  };

  let pendingWaits = null;
  define("__kvmjs", {
    setEnv(obj) {
      Object.assign(env, obj);
    },
    useModule(ns) {
      const d = ns?.default;
      if (d && typeof d.fetch === "function") {
        if (handler) throw new Error("the app both exports default { fetch } and calls Deno.serve: keep one");
        handler = (req, e, ctx) => d.fetch(req, e, ctx);
      }
      return handler !== null;
    },
    // After warm-up, before the snapshot: nothing the warm-up requests recorded stays, and
    // the lazily loaded prelude groups the app's source names are evaluated now
    // (src/engine/lazy.rs). A group that fails is logged (the app sees the failure on use).
    afterWarmup(groups) {
      performanceHooks.clear();
      for (const g of groups) {
        try {
          loadLazy(g);
        } catch (e) {
          console.error(`preloading ${g} failed:`, e);
        }
      }
    },
    reseed() {
      native.randomFill(s);
    },
    // The streamed body's bytes made since the last call (one Uint8Array, or null for
    // none), its state: 0 more to come, 1 ended, 2 failed, and for a failure the
    // response a throwing handler would get (used when the head is not sent yet).
    streamTake() {
      const st = streaming;
      if (st === null) return [null, 2, errorResult(new Error("no streamed body"), false)];
      let bytes = null;
      if (st.chunks.length === 1) bytes = st.chunks[0];
      else if (st.chunks.length > 1) {
        bytes = new Uint8ArrayClass(st.size);
        let at = 0;
        for (const c of st.chunks) {
          bytes.set(c, at);
          at += c.byteLength;
        }
      }
      st.chunks = [];
      st.size = 0;
      st.full = false;
      const resume = st.resume;
      st.resume = null;
      if (resume !== null) resume();
      if (st.state !== 0) streaming = null;
      return [bytes, st.state, st.state === 2 ? errorResult(st.error, st.debug) : null];
    },
    // Whether the streamed body has reached its high-water mark (the host takes it then,
    // even with jobs still pending).
    streamFull() {
      return streaming !== null && streaming.full;
    },
    timersNext: () => timers.next(),
    timersRun: () => timers.run(),
    timersClear: () => timers.clear(),
    // The ctx.waitUntil work of the last request, when it runs after the response.
    background() {
      const p = pendingWaits;
      pendingWaits = null;
      return p ?? Promise.resolve();
    },
    // One request: resolves to [status, flat headers, body (string or Uint8Array),
    // whether waitUntil work is left for background()]. With `deferWaits` (under the
    // kvmjs host) the response leaves first and the work runs after it, as on Workers;
    // otherwise (no host to continue the VM after the response) it finishes first. With
    // `stream`, an app's ReadableStream body is not awaited: the body is null and the
    // host reads it with streamTake.
    async handle(method, url, headers, reqBody, debug, deferWaits, stream) {
      streaming = null;
      const waits = [];
      const ctx = {
        waitUntil(p) {
          waits.push(Promise.resolve(p).catch((e) => console.error("waitUntil promise rejected:", e)));
        },
        passThroughOnException() {},
        props: {},
      };
      let result;
      try {
        const init = { method, headers };
        if (reqBody !== null && method !== "GET" && method !== "HEAD") init.body = reqBody;
        result = await toResult(await handler(new Request(url, init), env, ctx), stream, debug);
      } catch (e) {
        if (onError) {
          try {
            result = await toResult(await onError(e), stream, debug);
          } catch (e2) {
            console.error("onError failed:", e2);
          }
        }
        if (!result) {
          console.error("Uncaught exception in handler:", e);
          result = errorResult(e, debug);
        }
      }
      if (waits.length === 0) return [...result, false];
      if (deferWaits) {
        pendingWaits = Promise.all(waits);
        return [...result, true];
      }
      await Promise.all(waits);
      return [...result, false];
    },
  });
})();
