// TextEncoderStream and TextDecoderStream (Encoding Standard §7): a TransformStream whose
// transform runs the TextEncoder/TextDecoder of 10_encoding.js in streaming mode.
(() => {
  "use strict";
  const internal = globalThis.__kvmjsInternal;
  const { defineGlobal, tag, toDOMString, toUSVString, utf8Encode, inspectSymbol, bufferSourceBytes, TransformStream, TextDecoder } = internal;

  const tsReadable = Object.getOwnPropertyDescriptor(TransformStream.prototype, "readable").get;
  const tsWritable = Object.getOwnPropertyDescriptor(TransformStream.prototype, "writable").get;
  const enqueue = internal.TransformStreamDefaultController.prototype.enqueue;
  const decode = TextDecoder.prototype.decode;
  const decoderEncoding = Object.getOwnPropertyDescriptor(TextDecoder.prototype, "encoding").get;
  const decoderFatal = Object.getOwnPropertyDescriptor(TextDecoder.prototype, "fatal").get;
  const decoderIgnoreBOM = Object.getOwnPropertyDescriptor(TextDecoder.prototype, "ignoreBOM").get;
  const STREAM = Object.freeze(Object.assign(Object.create(null), { stream: true }));
  const REPLACEMENT = [0xef, 0xbf, 0xbd];

  // A TransformStream on a null-prototype transformer, so patched Object.prototype members
  // (start, readableType, ...) are not picked up.
  function transformStream(transform, flush) {
    return new TransformStream(Object.assign(Object.create(null), { transform, flush }));
  }

  class TextEncoderStream {
    #transform;

    constructor() {
      // A high surrogate that ended the previous chunk, waiting for its low half.
      let pending = null;
      this.#transform = transformStream((chunk, controller) => {
        let s = toDOMString(chunk);
        if (pending !== null) { s = pending + s; pending = null; }
        if (s.length === 0) return;
        const last = s.charCodeAt(s.length - 1);
        if (last >= 0xd800 && last <= 0xdbff) {
          pending = s.slice(-1);
          s = s.slice(0, -1);
          if (s.length === 0) return;
        }
        // Any other lone surrogate becomes U+FFFD.
        enqueue.call(controller, utf8Encode(toUSVString(s)));
      }, (controller) => {
        if (pending !== null) enqueue.call(controller, new Uint8Array(REPLACEMENT));
      });
    }

    get encoding() { this.#transform; return "utf-8"; }
    get readable() { return tsReadable.call(this.#transform); }
    get writable() { return tsWritable.call(this.#transform); }

    [inspectSymbol](depth, options, inspect) {
      return `TextEncoderStream ${inspect({ encoding: "utf-8", readable: this.readable, writable: this.writable })}`;
    }
  }
  tag(TextEncoderStream, "TextEncoderStream");

  class TextDecoderStream {
    #decoder;
    #transform;

    constructor(label = "utf-8", options = undefined) {
      const decoder = new TextDecoder(label, options);
      this.#decoder = decoder;
      this.#transform = transformStream((chunk, controller) => {
        // A thrown TypeError (not a BufferSource; malformed input when fatal) errors the stream.
        if (bufferSourceBytes(chunk) === null) throw new TypeError("TextDecoderStream: chunk is not an ArrayBuffer or ArrayBufferView.");
        const out = decode.call(decoder, chunk, STREAM);
        if (out !== "") enqueue.call(controller, out);
      }, (controller) => {
        const out = decode.call(decoder);
        if (out !== "") enqueue.call(controller, out);
      });
    }

    get encoding() { return decoderEncoding.call(this.#decoder); }
    get fatal() { return decoderFatal.call(this.#decoder); }
    get ignoreBOM() { return decoderIgnoreBOM.call(this.#decoder); }
    get readable() { return tsReadable.call(this.#transform); }
    get writable() { return tsWritable.call(this.#transform); }

    [inspectSymbol](depth, options, inspect) {
      return `TextDecoderStream ${inspect({ encoding: this.encoding, fatal: this.fatal, ignoreBOM: this.ignoreBOM, readable: this.readable, writable: this.writable })}`;
    }
  }
  tag(TextDecoderStream, "TextDecoderStream");

  Object.assign(internal, { TextEncoderStream, TextDecoderStream });
  defineGlobal("TextEncoderStream", TextEncoderStream);
  defineGlobal("TextDecoderStream", TextDecoderStream);
})();
