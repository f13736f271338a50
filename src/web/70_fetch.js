// Request, Response and the Body mixin (Fetch Standard), plus the host's body accessor.
(() => {
  "use strict";
  const native = globalThis.__native;
  const internal = globalThis.__kvmjsInternal;
  const {
    defineGlobal, requireArgs, tag, dict, toUSVString, toByteString, toDOMString, toUnsignedShort,
    bufferSourceBytes, concatBytes, streams, headers: H, isBlob, blobBytes, makeBlob,
    isURLSearchParams, formSerialize, paramsList, isAbortSignal, followSignal, newSignal, typedArrayName,
    isFormData, formDataList, multipartEncode, packageFormData,
  } = internal;

  const INTERNAL = Symbol("fetch internal");
  const EMPTY = new Uint8Array(0);

  // ---- bodies ----
  // A body is { src, stream, fromSrc, type, used }:
  //  - src: string | Uint8Array | Blob for bodies given as a static value (read directly,
  //    without a stream, as long as nobody asked for `.body`);
  //  - stream: the ReadableStream, created lazily from src on first `.body` access;
  //  - fromSrc: stream was made from src by us, so while it is untouched src is still valid;
  //  - used: consumed through the src fast path.

  function extractBody(object) {
    if (streams.isStream(object)) {
      if (streams.isDisturbed(object) || streams.isLocked(object)) throw new TypeError("The ReadableStream body is disturbed or locked.");
      return { src: null, stream: object, fromSrc: false, type: null, used: false };
    }
    if (isBlob(object)) {
      const t = object.type;
      return { src: object, stream: null, fromSrc: false, type: t === "" ? null : t, used: false };
    }
    const view = bufferSourceBytes(object);
    if (view !== null) return { src: view.slice(), stream: null, fromSrc: false, type: null, used: false };
    if (isURLSearchParams(object)) {
      return { src: formSerialize(paramsList(object)), stream: null, fromSrc: false, type: "application/x-www-form-urlencoded;charset=UTF-8", used: false };
    }
    if (isFormData(object)) {
      // Serialized now: later changes to the FormData do not reach the body.
      const { bytes, boundary } = multipartEncode(formDataList(object));
      return { src: bytes, stream: null, fromSrc: false, type: `multipart/form-data; boundary=${boundary}`, used: false };
    }
    return { src: toUSVString(object), stream: null, fromSrc: false, type: "text/plain;charset=UTF-8", used: false };
  }

  function srcBytes(src) {
    if (typeof src === "string") return native.utf8Encode(src);
    if (isBlob(src)) return blobBytes(src);
    return src;
  }

  // True while the static src still describes the whole body.
  function srcUsable(b) {
    return b.stream === null || (b.fromSrc && !streams.isDisturbed(b.stream) && !streams.isLocked(b.stream));
  }

  function bodyUsed(b) {
    return b !== null && (b.stream !== null ? streams.isDisturbed(b.stream) : b.used);
  }

  function unusable(b) {
    return b !== null && (bodyUsed(b) || (b.stream !== null && streams.isLocked(b.stream)));
  }

  function bodyStream(b) {
    if (b === null) return null;
    if (b.stream === null) {
      if (b.used) {
        b.stream = streams.consumed();
      } else {
        const src = b.src;
        b.stream = streams.fromChunks(() => {
          const bytes = srcBytes(src);
          return bytes.length === 0 ? [] : [bytes === src || isBlob(src) ? bytes.slice() : bytes];
        });
        b.fromSrc = true;
      }
    }
    return b.stream;
  }

  function cloneBody(b) {
    if (b === null) return null;
    if (b.stream === null) return { src: b.src, stream: null, fromSrc: false, type: b.type, used: false };
    // Fetch "clone a body" tees the stream with cloneForBranch2: the clone's chunks are copies.
    const [s1, s2] = streams.tee(b.stream, true);
    b.stream = s1;
    b.fromSrc = false;
    return { src: null, stream: s2, fromSrc: false, type: b.type, used: false };
  }

  // Moves a Request's body into a new Request, leaving the old one unusable.
  function transferBody(b) {
    if (b.stream === null) {
      b.used = true;
      return { src: b.src, stream: null, fromSrc: false, type: b.type, used: false };
    }
    return { src: null, stream: streams.proxy(b.stream), fromSrc: false, type: b.type, used: false };
  }

  async function streamBytes(stream) {
    const chunks = await streams.readAllChunks(stream, (c) => {
      if (typedArrayName(c) !== "Uint8Array") throw new TypeError("Body stream chunks must be Uint8Array.");
    });
    return chunks.length === 1 ? chunks[0] : concatBytes(chunks);
  }

  // Resolves with the body as a string (only when wantString and it is one) or as bytes that
  // may be shared with the body's source: callers copy before handing them to user code.
  async function consume(b, wantString) {
    if (unusable(b)) throw new TypeError("Body is unusable: it has already been read or is locked.");
    if (b === null) return wantString ? "" : EMPTY;
    if (b.stream === null) {
      b.used = true;
      const src = b.src;
      if (typeof src === "string") return wantString ? src : native.utf8Encode(src);
      return isBlob(src) ? blobBytes(src) : src;
    }
    return streamBytes(b.stream);
  }

  function bodyMixin(Class, stateOf) {
    const fresh = (bytes) => bytes.slice();
    const methods = {
      async arrayBuffer() { const b = stateOf(this).body; return fresh(await consume(b, false)).buffer; },
      async bytes() { const b = stateOf(this).body; return fresh(await consume(b, false)); },
      async blob() {
        const st = stateOf(this);
        const bytes = fresh(await consume(st.body, false));
        return makeBlob(bytes, H.get(st.headers, "content-type") ?? "");
      },
      async text() { return decodeText(await consume(stateOf(this).body, true)); },
      async json() { return JSON.parse(decodeText(await consume(stateOf(this).body, true))); },
      async formData() {
        const st = stateOf(this);
        return packageFormData(await consume(st.body, false), st.headers);
      },
    };
    for (const [name, fn] of Object.entries(methods)) {
      Object.defineProperty(Class.prototype, name, { value: fn, writable: true, configurable: true, enumerable: true });
    }
    Object.defineProperty(Class.prototype, "body", {
      get() { return bodyStream(stateOf(this).body); }, configurable: true, enumerable: true,
    });
    Object.defineProperty(Class.prototype, "bodyUsed", {
      get() { return bodyUsed(stateOf(this).body); }, configurable: true, enumerable: true,
    });
  }

  // "UTF-8 decode": a leading BOM is dropped.
  function decodeText(v) {
    if (typeof v === "string") return v.charCodeAt(0) === 0xfeff ? v.slice(1) : v;
    return native.utf8Decode(v, false, false);
  }

  function setBody(st, b) {
    st.body = b;
    if (b !== null && b.type !== null && !H.has(st.headers, "content-type")) H.appendRaw(st.headers, "content-type", b.type);
  }

  // ---- Response ----

  const NULL_BODY_STATUS = new Set([101, 103, 204, 205, 304]);
  const REDIRECT_STATUS = new Set([301, 302, 303, 307, 308]);
  const REASON_PHRASE = /^[\t\x20-\x7e\x80-\xff]*$/;

  let responseState, isResponse;

  function initResponse(init) {
    const opts = dict(init, "Response");
    const headersInit = opts.headers;
    const status = opts.status === undefined ? 200 : toUnsignedShort(opts.status);
    const statusText = opts.statusText === undefined ? "" : toByteString(opts.statusText);
    if (status < 200 || status > 599) throw new RangeError(`Response: status ${status} is outside the range [200, 599].`);
    if (!REASON_PHRASE.test(statusText)) throw new TypeError("Response: invalid statusText.");
    return {
      type: "default", url: "", redirected: false, status, statusText,
      headers: H.create("response", headersInit), body: null,
    };
  }

  class Response {
    #s;

    constructor(body = null, init = undefined) {
      if (body === INTERNAL) { this.#s = init; return; }
      const st = initResponse(init);
      if (body !== null && body !== undefined) {
        if (NULL_BODY_STATUS.has(st.status)) throw new TypeError(`Response with status ${st.status} cannot have a body.`);
        setBody(st, extractBody(body));
      }
      this.#s = st;
    }

    static {
      responseState = (r) => r.#s;
      isResponse = (r) => r !== null && typeof r === "object" && #s in r;
    }

    static error() {
      return new Response(INTERNAL, {
        type: "error", url: "", redirected: false, status: 0, statusText: "",
        headers: H.create("immutable"), body: null,
      });
    }

    static redirect(url, status = 302) {
      requireArgs(arguments.length, 1, "Response.redirect");
      // DEVIATION: there is no document base URL, so relative URLs are rejected.
      const parsed = native.urlParse(toUSVString(url));
      if (parsed == null) throw new TypeError(`Response.redirect: invalid URL '${url}'.`);
      const code = toUnsignedShort(status);
      if (!REDIRECT_STATUS.has(code)) throw new RangeError(`Response.redirect: invalid redirect status ${code}.`);
      const headers = H.create("none");
      H.appendRaw(headers, "location", parsed[0]);
      H.setGuard(headers, "immutable");
      return new Response(INTERNAL, { type: "default", url: "", redirected: false, status: code, statusText: "", headers, body: null });
    }

    static json(data = undefined, init = undefined) {
      const text = JSON.stringify(data);
      if (text === undefined) throw new TypeError("Response.json: data is not JSON-serializable.");
      const st = initResponse(init);
      if (NULL_BODY_STATUS.has(st.status)) throw new TypeError(`Response with status ${st.status} cannot have a body.`);
      setBody(st, { src: text, stream: null, fromSrc: false, type: "application/json", used: false });
      return new Response(INTERNAL, st);
    }

    get type() { return this.#s.type; }
    get url() { return this.#s.url; }
    get redirected() { return this.#s.redirected; }
    get status() { return this.#s.status; }
    get ok() { const s = this.#s.status; return s >= 200 && s <= 299; }
    get statusText() { return this.#s.statusText; }
    get headers() { return this.#s.headers; }

    clone() {
      const st = this.#s;
      if (unusable(st.body)) throw new TypeError("Response.clone: body has already been used.");
      return new Response(INTERNAL, { ...st, headers: H.clone(st.headers), body: cloneBody(st.body) });
    }

    [internal.inspectSymbol](depth, options, inspect) {
      const s = this.#s;
      return `Response ${inspect({
        status: s.status, statusText: s.statusText, headers: s.headers, body: s.body === null ? null : "<body>",
        bodyUsed: bodyUsed(s.body), ok: this.ok, redirected: s.redirected, type: s.type, url: s.url,
      })}`;
    }
  }
  bodyMixin(Response, (r) => responseState(r));
  tag(Response, "Response");

  // ---- Request ----

  const NORMALIZED_METHODS = new Set(["DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT"]);
  const FORBIDDEN_METHODS = new Set(["CONNECT", "TRACE", "TRACK"]);
  const METHOD_TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
  const ENUMS = {
    mode: ["same-origin", "no-cors", "cors", "navigate"],
    credentials: ["omit", "same-origin", "include"],
    cache: ["default", "no-store", "reload", "no-cache", "force-cache", "only-if-cached"],
    redirect: ["follow", "error", "manual"],
    referrerPolicy: ["", "no-referrer", "no-referrer-when-downgrade", "same-origin", "origin", "strict-origin",
      "origin-when-cross-origin", "strict-origin-when-cross-origin", "unsafe-url"],
    priority: ["high", "low", "auto"],
    duplex: ["half"],
  };

  function enumValue(opts, key, current) {
    const v = opts[key];
    if (v === undefined) return current;
    const s = toDOMString(v);
    if (!ENUMS[key].includes(s)) throw new TypeError(`Request: '${s}' is not a valid value for ${key}.`);
    return s;
  }

  let requestState, isRequestObject;

  class Request {
    #s;

    constructor(input, init = undefined) {
      if (input === INTERNAL) { this.#s = init; return; }
      requireArgs(arguments.length, 1, "Request constructor");
      const opts = dict(init, "Request constructor");
      let base = null;
      let url;
      if (isRequestObject(input)) {
        base = requestState(input);
        url = base.url;
      } else {
        const s = toUSVString(input);
        // DEVIATION: there is no document base URL, so relative URLs are rejected.
        const r = native.urlParse(s);
        if (r == null) throw new TypeError(`Request: invalid URL '${s}'.`);
        if (r[3] !== "" || r[4] !== "") throw new TypeError("Request: URL must not include credentials.");
        url = r[0];
      }
      const st = {
        url,
        method: base ? base.method : "GET",
        headers: null,
        signal: null,
        body: null,
        mode: base ? base.mode : "cors",
        credentials: base ? base.credentials : "same-origin",
        cache: base ? base.cache : "default",
        redirect: base ? base.redirect : "follow",
        referrer: base ? base.referrer : "about:client",
        referrerPolicy: base ? base.referrerPolicy : "",
        integrity: base ? base.integrity : "",
        keepalive: base ? base.keepalive : false,
      };
      // Dictionary members are read in WebIDL (lexicographic) order.
      const initBody = opts.body;
      st.cache = enumValue(opts, "cache", st.cache);
      st.credentials = enumValue(opts, "credentials", st.credentials);
      // DEVIATION: duplex is validated but not required for stream bodies.
      enumValue(opts, "duplex", "half");
      const headersInit = opts.headers;
      if (opts.integrity !== undefined) st.integrity = toDOMString(opts.integrity);
      if (opts.keepalive !== undefined) st.keepalive = !!opts.keepalive;
      if (opts.method !== undefined) {
        let m = toByteString(opts.method);
        if (!METHOD_TOKEN.test(m)) throw new TypeError(`Request: '${m}' is not a valid HTTP method.`);
        const upper = m.toUpperCase();
        if (FORBIDDEN_METHODS.has(upper)) throw new TypeError(`Request: '${m}' HTTP method is unsupported.`);
        if (NORMALIZED_METHODS.has(upper)) m = upper;
        st.method = m;
      }
      st.mode = enumValue(opts, "mode", st.mode);
      if (st.mode === "navigate") throw new TypeError("Request: mode 'navigate' is not allowed.");
      st.redirect = enumValue(opts, "redirect", st.redirect);
      if (opts.referrer !== undefined) {
        const ref = toUSVString(opts.referrer);
        if (ref === "") st.referrer = "";
        else {
          const parsed = native.urlParse(ref);
          if (parsed == null) throw new TypeError(`Request: invalid referrer '${ref}'.`);
          st.referrer = parsed[0];
        }
      }
      st.referrerPolicy = enumValue(opts, "referrerPolicy", st.referrerPolicy);
      // An input Request whose signal was never made cannot abort: nothing to follow.
      let signal = base ? base.signal : null;
      if (opts.signal !== undefined) {
        if (opts.signal !== null && !isAbortSignal(opts.signal)) throw new TypeError("Request: signal is not an AbortSignal.");
        signal = opts.signal;
      }
      // Without a signal to follow, the (never aborted) signal is made on first access.
      st.signal = signal !== null ? followSignal(signal) : null;

      st.headers = H.create("request", headersInit !== undefined ? headersInit : base ? base.headers : undefined);

      const inputBody = base ? base.body : null;
      const hasInitBody = initBody !== undefined && initBody !== null;
      if ((hasInitBody || inputBody !== null) && (st.method === "GET" || st.method === "HEAD")) {
        throw new TypeError("Request with GET/HEAD method cannot have body.");
      }
      if (hasInitBody) {
        setBody(st, extractBody(initBody));
      } else if (inputBody !== null) {
        if (unusable(inputBody)) throw new TypeError("Request: the input Request's body has already been used.");
        st.body = transferBody(inputBody);
      }
      this.#s = st;
    }

    static {
      requestState = (r) => r.#s;
      isRequestObject = (r) => r !== null && typeof r === "object" && #s in r;
    }

    get method() { return this.#s.method; }
    get url() { return this.#s.url; }
    get headers() { return this.#s.headers; }
    get destination() { requestState(this); return ""; }
    get referrer() { return this.#s.referrer; }
    get referrerPolicy() { return this.#s.referrerPolicy; }
    get mode() { return this.#s.mode; }
    get credentials() { return this.#s.credentials; }
    get cache() { return this.#s.cache; }
    get redirect() { return this.#s.redirect; }
    get integrity() { return this.#s.integrity; }
    get keepalive() { return this.#s.keepalive; }
    get isReloadNavigation() { requestState(this); return false; }
    get isHistoryNavigation() { requestState(this); return false; }
    get signal() {
      const st = this.#s;
      if (st.signal === null) st.signal = newSignal();
      return st.signal;
    }
    get duplex() { requestState(this); return "half"; }

    clone() {
      const st = this.#s;
      if (unusable(st.body)) throw new TypeError("Request.clone: body has already been used.");
      return new Request(INTERNAL, {
        ...st, headers: H.clone(st.headers), body: cloneBody(st.body), signal: st.signal === null ? null : followSignal(st.signal),
      });
    }

    [internal.inspectSymbol](depth, options, inspect) {
      const s = this.#s;
      return `Request ${inspect({ method: s.method, url: s.url, headers: s.headers, bodyUsed: bodyUsed(s.body) })}`;
    }
  }
  bodyMixin(Request, (r) => requestState(r));
  tag(Request, "Request");

  // For the host: the body without marking it used. A string source is returned as is, so
  // it crosses to the host without a copy; anything else becomes one Uint8Array.
  const hostBody = Object.freeze({
    async bytes(r) {
      let st;
      if (isResponse(r)) st = responseState(r);
      else if (isRequestObject(r)) st = requestState(r);
      else throw new TypeError("__kvmjsBody.bytes: argument is not a Request or Response.");
      const b = st.body;
      if (b === null) return "";
      if (srcUsable(b)) {
        if (b.used) throw new TypeError("Body has already been used.");
        if (typeof b.src === "string") return b.src;
        return isBlob(b.src) ? blobBytes(b.src) : b.src;
      }
      if (unusable(b)) throw new TypeError("Body has already been used.");
      return streamBytes(b.stream);
    },
    // The app's own ReadableStream body (one the host streams to the client), or null
    // when the body is static (bytes() reads it whole).
    stream(r) {
      if (!isResponse(r)) throw new TypeError("__kvmjsBody.stream: argument is not a Response.");
      const b = responseState(r).body;
      if (b === null || srcUsable(b)) return null;
      if (unusable(b)) throw new TypeError("Body has already been used.");
      return b.stream;
    },
  });
  Object.defineProperty(globalThis, "__kvmjsBody", { value: hostBody, writable: false, configurable: true, enumerable: false });

  Object.assign(internal, { Request, Response, requestState, responseState });
  defineGlobal("Request", Request);
  defineGlobal("Response", Response);
})();
