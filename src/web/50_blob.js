// Blob and File (File API). Blob bytes are immutable, so slices and copies share storage.
(() => {
  "use strict";
  const native = globalThis.__native;
  const internal = globalThis.__kvmjsInternal;
  const { defineGlobal, requireArgs, tag, toUSVString, toDOMString, toLongLong, dict, bufferSourceBytes, concatBytes } = internal;

  const STREAM_CHUNK = 65536;

  // Types with characters outside U+0020..U+007E are dropped; the rest is ASCII-lowercased.
  function normalizeType(t) {
    if (t === undefined) return "";
    const s = toDOMString(t);
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c < 0x20 || c > 0x7e) return "";
    }
    return s.toLowerCase();
  }

  let blobBytes, isBlob, makeBlob;

  class Blob {
    #bytes;
    #type;

    constructor(blobParts = undefined, options = undefined) {
      const parts = [];
      if (blobParts !== undefined) {
        if (blobParts === null || (typeof blobParts !== "object" && typeof blobParts !== "function") ||
            typeof blobParts[Symbol.iterator] !== "function") {
          throw new TypeError("Blob constructor: blobParts must be a sequence.");
        }
        for (const part of blobParts) {
          if (isBlob(part)) { parts.push(part.#bytes); continue; }
          const view = bufferSourceBytes(part);
          // Copy: the caller may mutate its buffer after constructing the Blob.
          parts.push(view !== null ? view.slice() : native.utf8Encode(toUSVString(part)));
        }
      }
      const opts = dict(options, "Blob constructor");
      if (opts.endings !== undefined) {
        const e = toDOMString(opts.endings);
        if (e !== "transparent" && e !== "native") throw new TypeError(`Blob constructor: invalid endings '${e}'.`);
        // DEVIATION: "native" endings do not convert line breaks.
      }
      this.#type = normalizeType(opts.type);
      this.#bytes = parts.length === 1 ? parts[0] : concatBytes(parts);
    }

    static {
      blobBytes = (b) => b.#bytes;
      isBlob = (b) => b !== null && typeof b === "object" && #bytes in b;
      makeBlob = (bytes, type) => {
        const b = new Blob();
        b.#bytes = bytes;
        b.#type = normalizeType(type);
        return b;
      };
    }

    get size() { return this.#bytes.length; }
    get type() { return this.#type; }

    slice(start = undefined, end = undefined, contentType = undefined) {
      const size = this.#bytes.length;
      let from = start === undefined ? 0 : toLongLong(start);
      from = from < 0 ? Math.max(size + from, 0) : Math.min(from, size);
      let to = end === undefined ? size : toLongLong(end);
      to = to < 0 ? Math.max(size + to, 0) : Math.min(to, size);
      const span = Math.max(to - from, 0);
      return makeBlob(this.#bytes.subarray(from, from + span), contentType);
    }

    async text() { return native.utf8Decode(this.#bytes, false, false); }
    async arrayBuffer() { return this.#bytes.slice().buffer; }
    async bytes() { return this.#bytes.slice(); }

    stream() {
      const bytes = this.#bytes;
      let offset = 0;
      // A byte stream (File API "get stream"), STREAM_CHUNK bytes per pull.
      return internal.streams.bytesFrom(() => {
        if (offset >= bytes.length) return null;
        const n = Math.min(STREAM_CHUNK, bytes.length - offset);
        offset += n;
        return bytes.slice(offset - n, offset);
      });
    }

    [internal.inspectSymbol](depth, options, inspect) {
      return `${this.constructor?.name ?? "Blob"} ${inspect({ size: this.#bytes.length, type: this.#type })}`;
    }
  }
  tag(Blob, "Blob");

  class File extends Blob {
    #name;
    #lastModified;

    constructor(fileBits, fileName, options = undefined) {
      requireArgs(arguments.length, 2, "File constructor");
      super(fileBits, options);
      this.#name = toUSVString(fileName);
      const lm = dict(options, "File constructor").lastModified;
      this.#lastModified = lm === undefined ? Math.trunc(native.wallNow()) : toLongLong(lm);
    }

    get name() { return this.#name; }
    get lastModified() { return this.#lastModified; }
    get webkitRelativePath() { return ""; }

    [internal.inspectSymbol](depth, options, inspect) {
      return `File ${inspect({ size: this.size, type: this.type, name: this.#name, lastModified: this.#lastModified })}`;
    }
  }
  tag(File, "File");

  Object.assign(internal, { Blob, File, blobBytes, isBlob, makeBlob, normalizeBlobType: normalizeType });
  defineGlobal("Blob", Blob);
  defineGlobal("File", File);
})();
