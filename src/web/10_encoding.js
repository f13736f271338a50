// TextEncoder (UTF-8, as the Encoding Standard has it), TextDecoder (every encoding of the
// standard, through encoding_rs), atob/btoa (forgiving-base64).
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

  const EMPTY = new Uint8Array(0);

  // Every encoding of the Encoding Standard, decoded natively by encoding_rs: the native
  // side owns one streaming decoder per TextDecoder (a split character or BOM waits there
  // for the next `stream: true` call).
  class TextDecoder {
    #encoding;
    #fatal;
    #ignoreBOM;
    #decode; // native decode(bytes, stream), holding this decoder's state

    constructor(label = "utf-8", options = undefined) {
      const l = toDOMString(label);
      const opts = dict(options, "TextDecoder constructor");
      const fatal = !!opts.fatal;
      const ignoreBOM = !!opts.ignoreBOM;
      // null for an unknown label and for the replacement encoding's labels.
      const d = native.textDecoder(l, fatal, ignoreBOM);
      if (d === null) throw new RangeError(`The encoding label provided ('${l}') is invalid.`);
      this.#encoding = d[0];
      this.#decode = d[1];
      this.#fatal = fatal;
      this.#ignoreBOM = ignoreBOM;
    }

    get encoding() { return this.#encoding; }
    get fatal() { return this.#fatal; }
    get ignoreBOM() { return this.#ignoreBOM; }

    decode(input = undefined, options = undefined) {
      let bytes = EMPTY;
      if (input !== undefined) {
        bytes = bufferSourceBytes(input);
        if (bytes === null) throw new TypeError("TextDecoder.decode: input is not an ArrayBuffer or ArrayBufferView.");
      }
      const stream = !!dict(options, "TextDecoder.decode").stream;
      return this.#decode(bytes, stream);
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
