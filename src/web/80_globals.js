// structuredClone, crypto, performance, navigator, self.
(() => {
  "use strict";
  const native = globalThis.__native;
  const internal = globalThis.__kvmjsInternal;
  const { defineGlobal, requireArgs, tag, typedArrayName, isArrayBuffer, builtinTag, DOMException } = internal;

  // ---- structuredClone (HTML StructuredSerialize + StructuredDeserialize in one pass) ----

  const brand = (check) => (v) => { try { check(v); return true; } catch { return false; } };
  const mapSize = Object.getOwnPropertyDescriptor(Map.prototype, "size").get;
  const setSize = Object.getOwnPropertyDescriptor(Set.prototype, "size").get;
  const regexpSource = Object.getOwnPropertyDescriptor(RegExp.prototype, "source").get;
  const regexpFlags = Object.getOwnPropertyDescriptor(RegExp.prototype, "flags").get;
  const isMap = brand((v) => mapSize.call(v));
  const isSet = brand((v) => setSize.call(v));
  const isDate = brand((v) => Date.prototype.getTime.call(v));
  const isRegExp = (v) => v !== RegExp.prototype && brand((x) => regexpSource.call(x))(v);
  const UNCLONEABLE_BRANDS = [
    ["WeakMap", brand((v) => WeakMap.prototype.has.call(v, {}))],
    ["WeakSet", brand((v) => WeakSet.prototype.has.call(v, {}))],
    ["WeakRef", typeof WeakRef === "function" ? brand((v) => WeakRef.prototype.deref.call(v)) : () => false],
    ["Promise", (v) => v instanceof Promise],
    ["FinalizationRegistry", (v) => typeof FinalizationRegistry === "function" && v instanceof FinalizationRegistry],
  ];
  const BOXES = [
    [Number.prototype.valueOf, (p) => new Number(p)],
    [String.prototype.valueOf, (p) => new String(p)],
    [Boolean.prototype.valueOf, (p) => new Boolean(p)],
    [BigInt.prototype.valueOf, (p) => Object(p)],
  ];
  const ERROR_CTORS = { Error, EvalError, RangeError, ReferenceError, SyntaxError, TypeError, URIError };
  const TYPED_ARRAY_CTORS = {
    Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array,
    Float32Array, Float64Array, BigInt64Array, BigUint64Array,
  };
  if (typeof Float16Array === "function") TYPED_ARRAY_CTORS.Float16Array = Float16Array;

  const dataCloneError = (what) => new DOMException(`${what} could not be cloned.`, "DataCloneError");

  // ArrayBuffer internals (ES2024 resizable buffers, ES2025 transfer) where the engine has them.
  const abProto = ArrayBuffer.prototype;
  const abGetter = (key) => Object.getOwnPropertyDescriptor(abProto, key)?.get;
  const abByteLength = abGetter("byteLength");
  const abDetached = abGetter("detached");
  const abResizable = abGetter("resizable");
  const abMaxByteLength = abGetter("maxByteLength");
  const abResize = abProto.resize;
  const abTransfer = abProto.transferToFixedLength ?? abProto.transfer;
  const isDetached = (b) => abDetached !== undefined && abDetached.call(b);
  const isResizable = (b) => abResizable !== undefined && abResizable.call(b);
  const taProto = Object.getPrototypeOf(Uint8Array.prototype);
  const taBuffer = Object.getOwnPropertyDescriptor(taProto, "buffer").get;
  const taByteOffset = Object.getOwnPropertyDescriptor(taProto, "byteOffset").get;
  const taByteLength = Object.getOwnPropertyDescriptor(taProto, "byteLength").get;
  const dvBuffer = Object.getOwnPropertyDescriptor(DataView.prototype, "buffer").get;
  const dvByteOffset = Object.getOwnPropertyDescriptor(DataView.prototype, "byteOffset").get;
  const dvByteLength = Object.getOwnPropertyDescriptor(DataView.prototype, "byteLength").get;

  function cloneArrayBuffer(v) {
    if (isDetached(v)) throw dataCloneError("A detached ArrayBuffer");
    if (!isResizable(v)) return abProto.slice.call(v, 0);
    const length = abByteLength.call(v);
    const out = new ArrayBuffer(length, { maxByteLength: abMaxByteLength.call(v) });
    new Uint8Array(out).set(new Uint8Array(v, 0, length));
    return out;
  }

  // A view's [[ByteOffset]], byte length and whether it tracks its buffer's length, which
  // JavaScript does not expose for views on resizable buffers (an out-of-bounds view reports
  // 0/0): found by growing the buffer to its maximum and then one element less, then
  // restoring its length and bytes. Returns null for an out-of-bounds view.
  function viewLayout(v, name, buffer) {
    const isDV = name === undefined;
    const offsetOf = () => (isDV ? dvByteOffset.call(v) : taByteOffset.call(v));
    const lengthOf = () => (isDV ? dvByteLength.call(v) : taByteLength.call(v));
    if (!isResizable(buffer)) return { offset: offsetOf(), length: lengthOf(), tracking: false };
    const current = abByteLength.call(buffer);
    const max = abMaxByteLength.call(buffer);
    const element = isDV ? 1 : TYPED_ARRAY_CTORS[name].BYTES_PER_ELEMENT;
    const saved = new Uint8Array(buffer).slice();
    let offset, length, tracking = false;
    try {
      abResize.call(buffer, max);
      offset = offsetOf();
      length = lengthOf();
      if (max - element >= offset && length >= element) {
        abResize.call(buffer, max - element);
        try { tracking = lengthOf() === length - element && offsetOf() === offset; } catch { tracking = false; }
      }
    } finally {
      abResize.call(buffer, current);
      new Uint8Array(buffer).set(saved);
    }
    if (tracking) return offset > current ? null : { offset, length: current - offset, tracking };
    return offset + length > current ? null : { offset, length, tracking };
  }

  // Platform objects that are not [Serializable]; checked by name once their classes exist.
  const PLATFORM_CLASSES = [
    "EventTarget", "Event", "Headers", "Request", "Response", "ReadableStream", "ReadableStreamDefaultReader",
    "ReadableStreamDefaultController", "URL", "URLSearchParams", "TextEncoder", "TextDecoder",
    "AbortController", "AbortSignal", "FormData",
    "ReadableStreamBYOBReader", "ReadableStreamBYOBRequest", "ReadableByteStreamController", "WritableStream",
    "WritableStreamDefaultWriter", "WritableStreamDefaultController", "TransformStream",
    "TransformStreamDefaultController", "ByteLengthQueuingStrategy", "CountQueuingStrategy",
    "TextEncoderStream", "TextDecoderStream",
  ];

  function unbox(v) {
    for (const [valueOf, make] of BOXES) {
      let p;
      try { p = valueOf.call(v); } catch { continue; }
      return make(p);
    }
    try { Symbol.prototype.valueOf.call(v); } catch { return undefined; }
    throw dataCloneError("Symbol object");
  }

  function cloneValue(v, memory) {
    const t = typeof v;
    if (t === "symbol") throw dataCloneError(`Symbol ${v.description ?? ""}`);
    if (t === "function") throw dataCloneError(`function ${v.name || "(anonymous)"}`);
    if (v === null || t !== "object") return v;
    const known = memory.get(v);
    if (known !== undefined) return known;

    let out;
    const proto = Object.getPrototypeOf(v);
    const tag = builtinTag(v);
    // Fast path for the overwhelmingly common plain objects and arrays.
    if ((proto === Object.prototype || proto === null) && tag === "[object Object]") return clonePlain(v, {}, memory);
    if (Array.isArray(v)) return clonePlain(v, new Array(v.length), memory);

    switch (tag) {
      case "[object Number]": case "[object String]": case "[object Boolean]": case "[object BigInt]": case "[object Symbol]":
        out = unbox(v);
        if (out !== undefined) { memory.set(v, out); return out; }
        break;
      case "[object Date]":
        if (isDate(v)) { out = new Date(Date.prototype.getTime.call(v)); memory.set(v, out); return out; }
        break;
      case "[object RegExp]":
        if (isRegExp(v)) { out = new RegExp(regexpSource.call(v), regexpFlags.call(v)); memory.set(v, out); return out; }
        break;
      case "[object ArrayBuffer]":
        if (isArrayBuffer(v)) { out = cloneArrayBuffer(v); memory.set(v, out); return out; }
        break;
      case "[object Map]":
        if (isMap(v)) {
          out = new Map();
          memory.set(v, out);
          // Entries are snapshotted first, as the spec serializes the list before recursing.
          for (const [k, val] of [...Map.prototype.entries.call(v)]) out.set(cloneValue(k, memory), cloneValue(val, memory));
          return out;
        }
        break;
      case "[object Set]":
        if (isSet(v)) {
          out = new Set();
          memory.set(v, out);
          for (const val of [...Set.prototype.values.call(v)]) out.add(cloneValue(val, memory));
          return out;
        }
        break;
      case "[object WeakMap]": case "[object WeakSet]": case "[object WeakRef]": case "[object Promise]":
      case "[object FinalizationRegistry]":
        throw dataCloneError(`#<${tag.slice(8, -1)}>`);
      default:
        break;
    }
    if (ArrayBuffer.isView(v)) {
      const name = typedArrayName(v);
      const source = name === undefined ? dvBuffer.call(v) : taBuffer.call(v);
      const buffer = cloneValue(source, memory); // throws first for a detached buffer
      const layout = viewLayout(v, name, source);
      if (layout === null) throw dataCloneError(`An out-of-bounds ${name ?? "DataView"}`);
      const { offset, length, tracking } = layout;
      if (name === undefined) {
        out = tracking ? new DataView(buffer, offset) : new DataView(buffer, offset, length);
      } else {
        const Ctor = TYPED_ARRAY_CTORS[name];
        out = tracking ? new Ctor(buffer, offset) : new Ctor(buffer, offset, length / Ctor.BYTES_PER_ELEMENT);
      }
      memory.set(v, out);
      return out;
    }
    if (internal.isBlob(v)) {
      out = v instanceof internal.File
        ? new internal.File([v], v.name, { type: v.type, lastModified: v.lastModified })
        : internal.makeBlob(internal.blobBytes(v), v.type);
      memory.set(v, out);
      return out;
    }
    if (internal.isCryptoKey(v)) {
      out = internal.cloneCryptoKey(v);
      memory.set(v, out);
      return out;
    }
    if (internal.isDOMException(v)) {
      out = new DOMException(v.message, v.name);
      copyStack(v, out);
      memory.set(v, out);
      return out;
    }
    if (v instanceof Error || tag === "[object Error]") {
      const name = v.name;
      const Ctor = typeof name === "string" && Object.hasOwn(ERROR_CTORS, name) ? ERROR_CTORS[name] : Error;
      const desc = Object.getOwnPropertyDescriptor(v, "message");
      out = desc !== undefined && "value" in desc ? new Ctor(`${desc.value}`) : new Ctor();
      copyStack(v, out);
      memory.set(v, out);
      if (Object.hasOwn(v, "cause")) {
        Object.defineProperty(out, "cause", { value: cloneValue(v.cause, memory), writable: true, configurable: true, enumerable: false });
      }
      return out;
    }
    // Tags can be spoofed, so the brands are checked once more before cloning as an object.
    for (const [name, check] of UNCLONEABLE_BRANDS) if (check(v)) throw dataCloneError(`#<${name}>`);
    for (const name of PLATFORM_CLASSES) {
      const C = internal[name];
      if (typeof C === "function" && v instanceof C) throw dataCloneError(`#<${name}>`);
    }
    // DEVIATION: Proxy objects cannot be detected and are cloned through their traps.
    return clonePlain(v, {}, memory);
  }

  function clonePlain(v, out, memory) {
    memory.set(v, out);
    for (const key of Object.keys(v)) {
      if (!Object.hasOwn(v, key)) continue;
      Object.defineProperty(out, key, { value: cloneValue(v[key], memory), writable: true, enumerable: true, configurable: true });
    }
    return out;
  }

  function copyStack(from, to) {
    const d = Object.getOwnPropertyDescriptor(from, "stack");
    if (d !== undefined && typeof d.value === "string") {
      Object.defineProperty(to, "stack", { value: d.value, writable: true, enumerable: false, configurable: true });
    }
  }

  // HTML StructuredSerializeWithTransfer + StructuredDeserializeWithTransfer. Only
  // ArrayBuffers are transferable here; the clone gets a copy of their bytes and, once the
  // whole value has been cloned, the originals are detached.
  function structuredClone(value, options = undefined) {
    requireArgs(arguments.length, 1, "structuredClone");
    const transferList = [];
    if (options !== undefined && options !== null) {
      if (typeof options !== "object" && typeof options !== "function") {
        throw new TypeError("structuredClone: options must be an object.");
      }
      const transfer = options.transfer;
      if (transfer !== undefined) {
        if (transfer === null || typeof transfer[Symbol.iterator] !== "function") {
          throw new TypeError("structuredClone: options.transfer must be a sequence.");
        }
        for (const item of transfer) {
          if (item === null || (typeof item !== "object" && typeof item !== "function")) {
            throw new TypeError("structuredClone: options.transfer must hold objects.");
          }
          transferList.push(item);
        }
      }
    }
    const seen = new Set();
    for (const t of transferList) {
      if (!isArrayBuffer(t)) throw new DOMException("Value not transferable.", "DataCloneError");
      if (seen.has(t)) throw new DOMException("An ArrayBuffer is listed twice in the transfer list.", "DataCloneError");
      if (isDetached(t)) throw new DOMException("A detached ArrayBuffer cannot be transferred.", "DataCloneError");
      seen.add(t);
    }
    const result = cloneValue(value, new Map());
    // DEVIATION: without ArrayBuffer.prototype.transfer in the engine, nothing is detached.
    if (abTransfer !== undefined) for (const t of transferList) abTransfer.call(t, 0);
    return result;
  }

  // ---- crypto ----

  const INTEGER_ARRAYS = new Set(["Int8Array", "Uint8Array", "Uint8ClampedArray", "Int16Array", "Uint16Array",
    "Int32Array", "Uint32Array", "BigInt64Array", "BigUint64Array"]);
  const CREATE = Symbol("create");
  const HEX = [];
  for (let i = 0; i < 256; i++) HEX.push((i < 16 ? "0" : "") + i.toString(16));

  // crypto.subtle: SubtleCrypto from lazy/crypto/75_subtle.js, evaluated on first use.
  class Crypto {
    constructor(key = undefined) { if (key !== CREATE) throw new TypeError("Illegal constructor."); }

    get subtle() {
      if (!(this instanceof Crypto)) throw new TypeError("Illegal invocation: not a Crypto.");
      return internal.lazySubtle();
    }

    getRandomValues(array) {
      requireArgs(arguments.length, 1, "crypto.getRandomValues");
      if (!ArrayBuffer.isView(array)) throw new TypeError("crypto.getRandomValues: argument is not an ArrayBufferView.");
      if (!INTEGER_ARRAYS.has(typedArrayName(array))) {
        throw new DOMException("The data argument must be an integer-type TypedArray.", "TypeMismatchError");
      }
      if (array.byteLength > 65536) {
        throw new DOMException(`The ArrayBufferView's byte length (${array.byteLength}) exceeds the number of bytes of entropy available via this API (65536).`, "QuotaExceededError");
      }
      native.randomFill(array);
      return array;
    }

    randomUUID() {
      const b = new Uint8Array(16);
      native.randomFill(b);
      b[6] = (b[6] & 0x0f) | 0x40; // version 4
      b[8] = (b[8] & 0x3f) | 0x80; // variant 10xx
      return `${HEX[b[0]]}${HEX[b[1]]}${HEX[b[2]]}${HEX[b[3]]}-${HEX[b[4]]}${HEX[b[5]]}-${HEX[b[6]]}${HEX[b[7]]}-` +
        `${HEX[b[8]]}${HEX[b[9]]}-${HEX[b[10]]}${HEX[b[11]]}${HEX[b[12]]}${HEX[b[13]]}${HEX[b[14]]}${HEX[b[15]]}`;
    }
  }
  tag(Crypto, "Crypto");

  // ---- performance ----

  // The host's monotonic clock counts from boot, so the time origin is boot in wall time.
  const timeOrigin = native.wallNow() - native.now();

  // User Timing (mark/measure) as in deno; entries are per request (the snapshot resets them).
  const entryState = new WeakMap();
  class PerformanceEntry {
    constructor(key = undefined, name, entryType, startTime, duration, detail) {
      if (key !== CREATE) throw new TypeError("Illegal constructor.");
      entryState.set(this, { name: String(name), entryType, startTime, duration, detail });
    }
    get name() { return entryOf(this).name; }
    get entryType() { return entryOf(this).entryType; }
    get startTime() { return entryOf(this).startTime; }
    get duration() { return entryOf(this).duration; }
    toJSON() {
      const e = entryOf(this);
      return { name: e.name, entryType: e.entryType, startTime: e.startTime, duration: e.duration, detail: e.detail };
    }
  }
  const entryOf = (e) => {
    const s = entryState.get(e);
    if (s === undefined) throw new TypeError("Illegal invocation: not a PerformanceEntry.");
    return s;
  };
  const cloneDetail = (d) => (d === undefined ? null : structuredClone(d));
  class PerformanceMark extends PerformanceEntry {
    constructor(name, options = undefined) {
      requireArgs(arguments.length, 1, "PerformanceMark");
      const startTime = options?.startTime ?? native.now();
      if (typeof startTime !== "number" || startTime < 0) throw new TypeError("PerformanceMark: startTime must be a non-negative number.");
      super(CREATE, name, "mark", startTime, 0, cloneDetail(options?.detail));
    }
    get detail() { return entryOf(this).detail; }
  }
  class PerformanceMeasure extends PerformanceEntry {
    constructor(key = undefined, ...rest) { super(key, ...rest); }
    get detail() { return entryOf(this).detail; }
  }
  const entries = [];
  const byName = (name, type) => entries.filter((e) => entryOf(e).name === name && (type === undefined || entryOf(e).entryType === type));
  const clear = (type, name) => {
    for (let i = entries.length - 1; i >= 0; i--) {
      const e = entryOf(entries[i]);
      if (e.entryType === type && (name === undefined || e.name === String(name))) entries.splice(i, 1);
    }
  };
  const markTime = (m) => {
    if (typeof m === "number") return m;
    const found = byName(String(m), "mark");
    if (found.length === 0) throw new DOMException(`Cannot find mark: "${m}".`, "SyntaxError");
    return entryOf(found[found.length - 1]).startTime;
  };

  class Performance extends EventTarget {
    constructor(key = undefined) {
      if (key !== CREATE) throw new TypeError("Illegal constructor.");
      super();
    }
    now() { return native.now(); }
    get timeOrigin() { return timeOrigin; }
    toJSON() { return { timeOrigin }; }
    mark(name, options = undefined) {
      requireArgs(arguments.length, 1, "Performance.mark");
      const m = new PerformanceMark(name, options);
      entries.push(m);
      return m;
    }
    measure(name, start = undefined, end = undefined) {
      requireArgs(arguments.length, 1, "Performance.measure");
      let detail = null;
      let s = 0;
      let e = native.now();
      if (start !== null && typeof start === "object") {
        if (end !== undefined) throw new TypeError("Performance.measure: options and an end mark cannot both be given.");
        if (start.start !== undefined && start.end !== undefined && start.duration !== undefined) {
          throw new TypeError("Performance.measure: start, end and duration cannot all be given.");
        }
        detail = cloneDetail(start.detail);
        if (start.start !== undefined) s = markTime(start.start);
        if (start.end !== undefined) e = markTime(start.end);
        if (start.duration !== undefined) {
          if (start.start !== undefined) e = s + start.duration;
          else s = e - start.duration;
        }
      } else {
        if (start !== undefined) s = markTime(start);
        if (end !== undefined) e = markTime(end);
      }
      const m = new PerformanceMeasure(CREATE, name, "measure", s, e - s, detail);
      entries.push(m);
      return m;
    }
    getEntries() { return entries.slice(); }
    getEntriesByName(name, type = undefined) { return byName(String(name), type); }
    getEntriesByType(type) { return entries.filter((e) => entryOf(e).entryType === String(type)); }
    clearMarks(name = undefined) { clear("mark", name); }
    clearMeasures(name = undefined) { clear("measure", name); }
  }
  // For the host's glue (src/runtime.js): the warm-up requests' marks stay out of the
  // snapshot, so every request starts with an empty timeline.
  globalThis.__kvmjsPerformance = { clear: () => { entries.length = 0; } };
  tag(PerformanceEntry, "PerformanceEntry");
  tag(PerformanceMark, "PerformanceMark");
  tag(PerformanceMeasure, "PerformanceMeasure");
  tag(Performance, "Performance");

  class Navigator {
    constructor(key = undefined) { if (key !== CREATE) throw new TypeError("Illegal constructor."); }
    get userAgent() { return "kvmjs"; }
  }
  tag(Navigator, "Navigator");

  Object.assign(internal, { structuredClone });
  defineGlobal("structuredClone", structuredClone);
  defineGlobal("Crypto", Crypto);
  defineGlobal("crypto", new Crypto(CREATE));
  defineGlobal("Performance", Performance);
  defineGlobal("PerformanceEntry", PerformanceEntry);
  defineGlobal("PerformanceMark", PerformanceMark);
  defineGlobal("PerformanceMeasure", PerformanceMeasure);
  defineGlobal("performance", new Performance(CREATE));
  defineGlobal("Navigator", Navigator);
  defineGlobal("navigator", new Navigator(CREATE));
  defineGlobal("self", globalThis);
})();
