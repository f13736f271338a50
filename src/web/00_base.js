// Shared plumbing for the src/web scripts: WebIDL-style conversions and helpers.
(() => {
  "use strict";
  const native = globalThis.__native;

  // The scripts are separate classic scripts, so the only channel between them is the
  // global object. This hidden registry carries the cross-file internals and is deleted by
  // 99_cleanup.js; each script keeps its own captured reference.
  const internal = Object.create(null);
  Object.defineProperty(globalThis, "__kvmjsInternal", {
    value: internal, writable: false, configurable: true, enumerable: false,
  });
  internal.native = native;

  internal.defineGlobal = (name, value) => {
    Object.defineProperty(globalThis, name, { value, writable: true, configurable: true, enumerable: false });
  };

  internal.tag = (Class, name) => {
    Object.defineProperty(Class.prototype, Symbol.toStringTag, { value: name, configurable: true });
  };

  internal.requireArgs = (count, needed, what) => {
    if (count < needed) {
      throw new TypeError(`${what}: ${needed} argument${needed === 1 ? "" : "s"} required, but only ${count} present.`);
    }
  };

  // Template literals use ToString, which (unlike String()) throws on symbols, as WebIDL wants.
  const toDOMString = (v) => `${v}`;
  internal.toDOMString = toDOMString;

  function replaceLoneSurrogates(s) {
    let out = null;
    let last = 0;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c < 0xd800 || c > 0xdfff) continue;
      if (c <= 0xdbff && i + 1 < s.length) {
        const d = s.charCodeAt(i + 1);
        if (d >= 0xdc00 && d <= 0xdfff) { i++; continue; }
      }
      out = (out === null ? "" : out) + s.slice(last, i) + "\uFFFD";
      last = i + 1;
    }
    return out === null ? s : out + s.slice(last);
  }
  const toWellFormed = String.prototype.toWellFormed;
  internal.toUSVString = typeof toWellFormed === "function"
    ? (v) => toWellFormed.call(toDOMString(v))
    : (v) => replaceLoneSurrogates(toDOMString(v));

  const NON_LATIN1 = /[^\x00-\xff]/;
  internal.toByteString = (v) => {
    const s = typeof v === "string" ? v : toDOMString(v);
    if (NON_LATIN1.test(s)) throw new TypeError(`Cannot convert "${s}" to a ByteString: it has characters above U+00FF.`);
    return s;
  };

  // True when iterating v with for-of is observably the same as indexing it, which lets hot
  // paths (Headers and URLSearchParams initialisers) skip the iterator protocol.
  const arrayValues = Array.prototype[Symbol.iterator];
  const arrayIteratorProto = Object.getPrototypeOf([][Symbol.iterator]());
  const arrayIteratorNext = arrayIteratorProto.next;
  internal.isPlainArray = (v) => Array.isArray(v) && v[Symbol.iterator] === arrayValues && arrayIteratorProto.next === arrayIteratorNext;

  // WebIDL `long long` without [EnforceRange]: non-finite becomes 0.
  internal.toLongLong = (v) => {
    const n = Number(v);
    return Number.isFinite(n) ? Math.trunc(n) : 0;
  };
  internal.toUnsignedShort = (v) => {
    const n = Number(v);
    if (!Number.isFinite(n)) return 0;
    return ((Math.trunc(n) % 65536) + 65536) % 65536;
  };
  internal.toEnforcedULongLong = (v, what) => {
    const n = Number(v);
    if (!Number.isFinite(n)) throw new TypeError(`${what}: value is not a finite number.`);
    const t = Math.trunc(n);
    if (t < 0 || t > Number.MAX_SAFE_INTEGER) throw new TypeError(`${what}: value is outside the accepted range.`);
    return t;
  };

  // Dictionary arguments: undefined/null mean "all defaults", other primitives are errors.
  internal.dict = (v, what) => {
    if (v === undefined || v === null) return {};
    if (typeof v !== "object" && typeof v !== "function") throw new TypeError(`${what}: options must be an object.`);
    return v;
  };

  const objectToString = Object.prototype.toString;
  // Object.prototype.toString is a cheap pre-filter: the exception-based brand checks below
  // are slow, and most values are rejected by the tag already.
  internal.builtinTag = (v) => { try { return objectToString.call(v); } catch { return ""; } };

  const abByteLength = Object.getOwnPropertyDescriptor(ArrayBuffer.prototype, "byteLength").get;
  internal.isArrayBuffer = (v) => {
    if (v === null || typeof v !== "object" || internal.builtinTag(v) !== "[object ArrayBuffer]") return false;
    try { abByteLength.call(v); return true; } catch { return false; }
  };
  const sabByteLength = typeof SharedArrayBuffer === "function"
    ? Object.getOwnPropertyDescriptor(SharedArrayBuffer.prototype, "byteLength").get
    : null;
  const isSharedArrayBuffer = (v) => {
    if (sabByteLength === null || v === null || typeof v !== "object" || internal.builtinTag(v) !== "[object SharedArrayBuffer]") return false;
    try { sabByteLength.call(v); return true; } catch { return false; }
  };

  const taTag = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(Uint8Array.prototype), Symbol.toStringTag).get;
  // Name of the typed array's kind ("Uint8Array", ...) or undefined; unaffected by user toStringTag.
  internal.typedArrayName = (v) => taTag.call(v);

  // A Uint8Array view over a BufferSource's bytes (no copy), or null if v is not one.
  internal.bufferSourceBytes = (v) => {
    if (v === null || typeof v !== "object") return null;
    if (ArrayBuffer.isView(v)) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
    if (internal.isArrayBuffer(v) || isSharedArrayBuffer(v)) return new Uint8Array(v);
    return null;
  };

  internal.concatBytes = (chunks) => {
    let total = 0;
    for (const c of chunks) total += c.byteLength;
    const out = new Uint8Array(total);
    let off = 0;
    for (const c of chunks) { out.set(c, off); off += c.byteLength; }
    return out;
  };

  internal.utf8Encode = (s) => native.utf8Encode(s);
  internal.utf8Decode = (bytes, fatal, ignoreBOM) => native.utf8Decode(bytes, fatal, ignoreBOM);

  const IteratorPrototype = Object.getPrototypeOf(Object.getPrototypeOf([][Symbol.iterator]()));

  // WebIDL pair iterables (URLSearchParams, Headers). pairsOf(obj) must brand-check and
  // return the current list of [key, value]; iterators re-read it on every step because
  // the spec makes them observe mutations.
  internal.definePairIterable = (Class, name, pairsOf) => {
    const states = new WeakMap();
    const iterProto = Object.create(IteratorPrototype);
    Object.defineProperty(iterProto, "next", {
      value: function next() {
        const st = states.get(this);
        if (st === undefined) throw new TypeError(`next() called on an object that is not a ${name} Iterator.`);
        const pairs = pairsOf(st.target);
        if (st.index >= pairs.length) return { value: undefined, done: true };
        const [k, v] = pairs[st.index++];
        const value = st.kind === "keys" ? k : st.kind === "values" ? v : [k, v];
        return { value, done: false };
      },
      writable: true, configurable: true, enumerable: true,
    });
    Object.defineProperty(iterProto, Symbol.toStringTag, { value: `${name} Iterator`, configurable: true });
    const make = (target, kind) => {
      pairsOf(target);
      const it = Object.create(iterProto);
      states.set(it, { target, kind, index: 0 });
      return it;
    };
    const methods = {
      entries() { return make(this, "entries"); },
      keys() { return make(this, "keys"); },
      values() { return make(this, "values"); },
      forEach(callback, thisArg = undefined) {
        pairsOf(this);
        if (typeof callback !== "function") throw new TypeError(`${name}.forEach: callback is not a function.`);
        for (let i = 0; ; i++) {
          const pairs = pairsOf(this);
          if (i >= pairs.length) break;
          callback.call(thisArg, pairs[i][1], pairs[i][0], this);
        }
      },
    };
    for (const key of ["entries", "keys", "values", "forEach"]) {
      Object.defineProperty(Class.prototype, key, { value: methods[key], writable: true, configurable: true, enumerable: true });
    }
    Object.defineProperty(Class.prototype, Symbol.iterator, { value: methods.entries, writable: true, configurable: true });
  };

  // Objects formatted by console.log may implement this hook (same key Node uses, so
  // libraries that already support it keep working).
  internal.inspectSymbol = Symbol.for("nodejs.util.inspect.custom");
})();
