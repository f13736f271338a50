// fetch() (Fetch Standard) to backends: the kvmjs host performs the HTTP exchange
// (crates/vm/src/fetch), allowed only to the origins in the program's tinykvm.json
// `fetch.allow`. Request bodies that are streams are written to the host as they are
// produced; the response body is a byte ReadableStream read from the host as it is consumed.
(() => {
  "use strict";
  const internal = globalThis.__kvmjsInternal;
  const native = internal.native;
  const { Request, requestState, responseState, Response, streams, headers: H, defineGlobal, isBlob, blobBytes } = internal;
  const RS = globalThis.ReadableStream;
  const DOMExceptionCtor = globalThis.DOMException;

  // Host call flags (kvmjs_abi::fetch).
  const BODY_STREAM = 1, REDIRECT_MANUAL = 2, REDIRECT_ERROR = 4;
  const NULL_BODY_STATUS = new Set([101, 103, 204, 205, 304]);

  function abortReason(signal) {
    const r = signal.reason;
    return r !== undefined ? r : new DOMExceptionCtor("The operation was aborted.", "AbortError");
  }

  function headerLines(headers) {
    let s = "";
    for (const [k, v] of headers) s += `${k}: ${v}\n`;
    return s;
  }

  // The request body as a string/bytes (static bodies), or its stream, marking it used.
  function takeBody(st) {
    const b = st.body;
    if (b === null) return { bytes: null, stream: null };
    if (b.stream === null) {
      if (b.used) throw new TypeError("fetch: the request body has already been used.");
      b.used = true;
      const src = b.src;
      if (typeof src === "string") return { bytes: native.utf8Encode(src), stream: null };
      return { bytes: isBlob(src) ? blobBytes(src) : src, stream: null };
    }
    if (streams.isDisturbed(b.stream) || streams.isLocked(b.stream)) {
      throw new TypeError("fetch: the request body has already been used or is locked.");
    }
    return { bytes: null, stream: b.stream };
  }

  function parseHeaders(lines) {
    const h = H.create("none");
    for (const line of lines.split("\n")) {
      if (line === "") continue;
      const i = line.indexOf(":");
      H.appendRaw(h, line.slice(0, i), line.slice(i + 1).trim());
    }
    H.setGuard(h, "immutable");
    return h;
  }

  function makeResponse(head, handle, method, signal) {
    const [status, lines, url, redirected] = head;
    let open = true;
    const close = () => { if (open) { open = false; native.fetchClose(handle); } };
    let body = null;
    if (NULL_BODY_STATUS.has(status) || method === "HEAD") {
      close();
    } else {
      body = new RS({
        type: "bytes",
        pull(c) {
          if (signal !== null && signal.aborted) { close(); throw abortReason(signal); }
          let chunk;
          try {
            chunk = native.fetchRead(handle);
          } catch (e) {
            open = false; // the host dropped the handle with the error
            throw e;
          }
          if (chunk !== null) { c.enqueue(chunk); return; }
          close();
          c.close();
          const req = c.byobRequest;
          if (req !== null && req !== undefined) req.respond(0);
        },
        cancel() { close(); },
      }, { highWaterMark: 0 });
    }
    const r = new Response(null, { status: status >= 200 && status <= 599 ? status : 200 });
    const st = responseState(r);
    if (body !== null) {
      st.body = { src: null, stream: body, fromSrc: false, type: null, used: false };
    }
    Object.assign(st, { type: "basic", url, redirected, status, headers: parseHeaders(lines) });
    if (signal !== null && body !== null) {
      signal.addEventListener("abort", () => {
        if (!open) return;
        close();
        // Locked by a reader, cancel() rejects: the reader's next read fails instead.
        body.cancel(abortReason(signal)).catch(() => {});
      }, { once: true });
    }
    return r;
  }

  async function writeStream(handle, stream, signal) {
    const reader = stream.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        if (signal !== null && signal.aborted) throw abortReason(signal);
        if (!(value instanceof Uint8Array)) throw new TypeError("fetch: request body stream chunks must be Uint8Array.");
        if (value.byteLength > 0) native.fetchWrite(handle, value);
      }
    } catch (e) {
      reader.cancel(e).catch(() => {});
      throw e;
    } finally {
      reader.releaseLock();
    }
  }

  async function fetch(input, init = undefined) {
    if (arguments.length < 1) throw new TypeError("fetch: 1 argument required, but only 0 present.");
    const request = new Request(input, init);
    const st = requestState(request);
    const signal = st.signal;
    if (signal !== null && signal.aborted) throw abortReason(signal);
    const { bytes, stream } = takeBody(st);
    const flags = (st.redirect === "manual" ? REDIRECT_MANUAL : st.redirect === "error" ? REDIRECT_ERROR : 0)
      | (stream !== null ? BODY_STREAM : 0);
    const lines = headerLines(st.headers);
    const [handle, head0] = native.fetchStart(st.method, st.url, lines, bytes, flags);
    let head = head0;
    if (stream !== null) {
      try {
        await writeStream(handle, stream, signal);
        if (signal !== null && signal.aborted) throw abortReason(signal);
        head = native.fetchEnd(handle);
      } catch (e) {
        native.fetchClose(handle);
        throw e;
      }
    }
    if (signal !== null && signal.aborted) {
      native.fetchClose(handle);
      throw abortReason(signal);
    }
    return makeResponse(head, handle, st.method, signal);
  }

  Object.defineProperty(fetch, "name", { value: "fetch" });
  defineGlobal("fetch", fetch);
})();
