// TextEncoder, TextDecoder (Encoding Standard, UTF-8 only), atob/btoa (forgiving-base64).
(() => {
  "use strict";
  const native = globalThis.__native;
  const internal = globalThis.__kvmjsInternal;
  const { defineGlobal, requireArgs, tag, toDOMString, toUSVString, dict, bufferSourceBytes, typedArrayName, DOMException } = internal;

  class TextEncoder {
    get encoding() { return "utf-8"; }

    encode(input = "") {
      return native.utf8Encode(toUSVString(input));
    }

    // Encoded in JS because it must stop at the last code point that fits entirely.
    encodeInto(source, destination) {
      requireArgs(arguments.length, 2, "TextEncoder.encodeInto");
      const s = toUSVString(source);
      if (typedArrayName(destination) !== "Uint8Array") {
        throw new TypeError("TextEncoder.encodeInto: destination is not a Uint8Array.");
      }
      const cap = destination.length;
      const n = s.length;
      let read = 0;
      let written = 0;
      while (read < n) {
        let c = s.charCodeAt(read);
        let units = 1;
        if (c >= 0xd800 && c <= 0xdbff && read + 1 < n) {
          const d = s.charCodeAt(read + 1);
          if (d >= 0xdc00 && d <= 0xdfff) { c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00); units = 2; }
        }
        if (c < 0x80) {
          if (written + 1 > cap) break;
          destination[written++] = c;
        } else if (c < 0x800) {
          if (written + 2 > cap) break;
          destination[written++] = 0xc0 | (c >> 6);
          destination[written++] = 0x80 | (c & 0x3f);
        } else if (c < 0x10000) {
          if (written + 3 > cap) break;
          destination[written++] = 0xe0 | (c >> 12);
          destination[written++] = 0x80 | ((c >> 6) & 0x3f);
          destination[written++] = 0x80 | (c & 0x3f);
        } else {
          if (written + 4 > cap) break;
          destination[written++] = 0xf0 | (c >> 18);
          destination[written++] = 0x80 | ((c >> 12) & 0x3f);
          destination[written++] = 0x80 | ((c >> 6) & 0x3f);
          destination[written++] = 0x80 | (c & 0x3f);
        }
        read += units;
      }
      return { read, written };
    }
  }
  tag(TextEncoder, "TextEncoder");

  // Every label the Encoding Standard maps to UTF-8.
  const UTF8_LABELS = new Set(["unicode-1-1-utf-8", "unicode11utf8", "unicode20utf8", "utf-8", "utf8", "x-unicode20utf8"]);
  const EMPTY = new Uint8Array(0);

  // Length of an unfinished-but-so-far-valid UTF-8 sequence at the end of b (0 if none);
  // those bytes are held back so a stream split mid-character decodes as if unsplit.
  function incompleteTail(b) {
    const n = b.length;
    for (let k = 1; k <= 3 && k <= n; k++) {
      const lead = b[n - k];
      if ((lead & 0xc0) === 0x80) continue;
      const need = lead >= 0xc2 && lead <= 0xdf ? 2 : lead >= 0xe0 && lead <= 0xef ? 3 : lead >= 0xf0 && lead <= 0xf4 ? 4 : 0;
      if (need <= k) return 0;
      if (k >= 2) {
        const second = b[n - k + 1];
        const lo = lead === 0xe0 ? 0xa0 : lead === 0xf0 ? 0x90 : 0x80;
        const hi = lead === 0xed ? 0x9f : lead === 0xf4 ? 0x8f : 0xbf;
        if (second < lo || second > hi) return 0;
      }
      return k;
    }
    return 0;
  }

  class TextDecoder {
    #fatal;
    #ignoreBOM;
    #pending = null;  // held-back bytes of a split character (stream mode)
    #bomSeen = false; // once any bytes were decoded in this stream, a BOM is content

    constructor(label = "utf-8", options = undefined) {
      const l = toDOMString(label).replace(/^[\t\n\f\r ]+|[\t\n\f\r ]+$/g, "").toLowerCase();
      const opts = dict(options, "TextDecoder constructor");
      // DEVIATION: only UTF-8 is supported; every other (even valid) label throws RangeError.
      if (!UTF8_LABELS.has(l)) throw new RangeError(`TextDecoder: the encoding label provided ('${label}') is invalid or unsupported.`);
      this.#fatal = !!opts.fatal;
      this.#ignoreBOM = !!opts.ignoreBOM;
    }

    get encoding() { return "utf-8"; }
    get fatal() { return this.#fatal; }
    get ignoreBOM() { return this.#ignoreBOM; }

    decode(input = undefined, options = undefined) {
      let bytes = EMPTY;
      if (input !== undefined && input !== null) {
        bytes = bufferSourceBytes(input);
        if (bytes === null) throw new TypeError("TextDecoder.decode: input is not an ArrayBuffer or ArrayBufferView.");
      } else if (input === null) {
        throw new TypeError("TextDecoder.decode: input is not an ArrayBuffer or ArrayBufferView.");
      }
      const stream = !!dict(options, "TextDecoder.decode").stream;
      if (this.#pending !== null) {
        const joined = new Uint8Array(this.#pending.length + bytes.length);
        joined.set(this.#pending);
        joined.set(bytes, this.#pending.length);
        bytes = joined;
        this.#pending = null;
      }
      if (stream) {
        const keep = incompleteTail(bytes);
        if (keep > 0) {
          this.#pending = bytes.slice(bytes.length - keep);
          bytes = bytes.subarray(0, bytes.length - keep);
        }
      }
      let out = "";
      if (bytes.length > 0) {
        try {
          out = native.utf8Decode(bytes, this.#fatal, this.#ignoreBOM || this.#bomSeen);
        } catch (e) {
          this.#pending = null;
          this.#bomSeen = false;
          throw e;
        }
        this.#bomSeen = true;
      }
      if (!stream) {
        this.#bomSeen = false;
        this.#pending = null;
      }
      return out;
    }
  }
  tag(TextDecoder, "TextDecoder");

  const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const B64_VALUE = new Int8Array(128).fill(-1);
  for (let i = 0; i < 64; i++) B64_VALUE[B64.charCodeAt(i)] = i;

  const invalidCharacter = (msg) => new DOMException(msg, "InvalidCharacterError");

  // Builds a string from char codes in slices, avoiding argument-count limits of apply.
  function fromCodes(codes, length) {
    let out = "";
    for (let i = 0; i < length; i += 8192) {
      out += String.fromCharCode.apply(null, codes.subarray(i, Math.min(i + 8192, length)));
    }
    return out;
  }

  function atob(data) {
    requireArgs(arguments.length, 1, "atob");
    let s = toDOMString(data).replace(/[\t\n\f\r ]+/g, "");
    if (s.length % 4 === 0) {
      if (s.endsWith("==")) s = s.slice(0, -2);
      else if (s.endsWith("=")) s = s.slice(0, -1);
    }
    if (s.length % 4 === 1) throw invalidCharacter("The string to be decoded is not correctly encoded.");
    const out = new Uint16Array(Math.floor((s.length * 3) / 4));
    let acc = 0;
    let bits = 0;
    let j = 0;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      const v = c < 128 ? B64_VALUE[c] : -1;
      if (v < 0) throw invalidCharacter("The string to be decoded is not correctly encoded.");
      acc = ((acc << 6) | v) & 0xffffff;
      bits += 6;
      if (bits >= 8) {
        bits -= 8;
        out[j++] = (acc >> bits) & 0xff;
      }
    }
    return fromCodes(out, j);
  }

  function btoa(data) {
    requireArgs(arguments.length, 1, "btoa");
    const s = toDOMString(data);
    let out = "";
    const n = s.length;
    for (let i = 0; i < n; i++) {
      if (s.charCodeAt(i) > 0xff) throw invalidCharacter("The string to be encoded contains characters outside of the Latin1 range.");
    }
    let i = 0;
    for (; i + 2 < n; i += 3) {
      const v = (s.charCodeAt(i) << 16) | (s.charCodeAt(i + 1) << 8) | s.charCodeAt(i + 2);
      out += B64[v >> 18] + B64[(v >> 12) & 63] + B64[(v >> 6) & 63] + B64[v & 63];
    }
    if (n - i === 1) {
      const v = s.charCodeAt(i) << 16;
      out += B64[v >> 18] + B64[(v >> 12) & 63] + "==";
    } else if (n - i === 2) {
      const v = (s.charCodeAt(i) << 16) | (s.charCodeAt(i + 1) << 8);
      out += B64[v >> 18] + B64[(v >> 12) & 63] + B64[(v >> 6) & 63] + "=";
    }
    return out;
  }

  Object.assign(internal, { TextEncoder, TextDecoder });
  defineGlobal("TextEncoder", TextEncoder);
  defineGlobal("TextDecoder", TextDecoder);
  defineGlobal("atob", atob);
  defineGlobal("btoa", btoa);
})();
