// Streams Standard. The classes are web-streams-polyfill's (59_web_streams_polyfill.js, the
// library's unmodified ponyfill build, a port of the spec's reference implementation): this
// file installs them as the globals and gives the other scripts (Blob, fetch bodies) the
// internal operations they need. Those operations use methods captured here at load time, so
// user code patching the prototypes or globals later cannot change how bodies are read.
(() => {
  "use strict";
  const internal = globalThis.__kvmjsInternal;
  const { defineGlobal, inspectSymbol, queueMicrotask } = internal;

  const lib = globalThis.WebStreamsPolyfill;
  delete globalThis.WebStreamsPolyfill;
  const {
    ReadableStream, ReadableStreamDefaultReader, ReadableStreamBYOBReader, ReadableStreamBYOBRequest,
    ReadableStreamDefaultController, ReadableByteStreamController,
    WritableStream, WritableStreamDefaultWriter, WritableStreamDefaultController,
    TransformStream, TransformStreamDefaultController,
    ByteLengthQueuingStrategy, CountQueuingStrategy,
  } = lib;

  const noop = () => {};
  const getter = (C, name) => Object.getOwnPropertyDescriptor(C.prototype, name).get;
  // Rejections the user may never observe must not be reported as unhandled.
  const promiseThen = Promise.prototype.then;
  const markHandled = (p) => { promiseThen.call(p, undefined, noop); };

  const rsLocked = getter(ReadableStream, "locked");
  const rsGetReader = ReadableStream.prototype.getReader;
  const rsTee = ReadableStream.prototype.tee;
  const rsPipeTo = ReadableStream.prototype.pipeTo;
  const readerRead = ReadableStreamDefaultReader.prototype.read;
  const readerClosed = getter(ReadableStreamDefaultReader, "closed");
  const readerRelease = ReadableStreamDefaultReader.prototype.releaseLock;
  const readerCancel = ReadableStreamDefaultReader.prototype.cancel;
  const ctrlEnqueue = ReadableStreamDefaultController.prototype.enqueue;
  const ctrlClose = ReadableStreamDefaultController.prototype.close;
  const ctrlError = ReadableStreamDefaultController.prototype.error;
  const byteEnqueue = ReadableByteStreamController.prototype.enqueue;
  const byteClose = ReadableByteStreamController.prototype.close;
  const byobRequest = getter(ReadableByteStreamController, "byobRequest");
  const byobRespond = ReadableStreamBYOBRequest.prototype.respond;
  const tsReadable = getter(TransformStream, "readable");
  const tsWritable = getter(TransformStream, "writable");

  // Brand check through the `locked` getter, which throws for anything but a ReadableStream.
  function isStream(v) {
    if (v === null || typeof v !== "object") return false;
    try { rsLocked.call(v); return true; } catch { return false; }
  }

  // The library keeps the spec's [[disturbed]] slot as this field.
  const isDisturbed = (stream) => stream._disturbed === true;
  const isByteStream = (stream) => stream._readableStreamController instanceof ReadableByteStreamController;

  // A stream from an underlying source; null prototypes so patched Object.prototype members
  // (start, type, highWaterMark, ...) are not picked up as source or strategy members.
  function createStream(source, highWaterMark = 1) {
    return new ReadableStream(Object.assign(Object.create(null), source), Object.assign(Object.create(null), { highWaterMark }));
  }

  // `check` (optional) sees each chunk as it is read and may throw to stop reading there
  // (fetch's "read all bytes" fails at the first chunk that is not a Uint8Array, so an
  // endless stream of bad chunks is not read to the end first).
  async function readAllChunks(stream, check) {
    const reader = rsGetReader.call(stream);
    const chunks = [];
    for (;;) {
      const { value, done } = await readerRead.call(reader);
      if (done) return chunks;
      if (check !== undefined) check(value);
      chunks.push(value);
    }
  }

  // ReadableStreamDefaultTee with cloneForBranch2 (fetch's "tee a ReadableStream", used by
  // clone(): the second branch gets a structured clone of each chunk). The library's tee()
  // has no such flag; byte streams go to it because their tee copies every chunk anyway.
  function teeCloning(stream) {
    if (isByteStream(stream)) return rsTee.call(stream);
    const reader = rsGetReader.call(stream);
    let reading = false, readAgain = false, canceled1 = false, canceled2 = false;
    let reason1, reason2, c1, c2, resolveCancel;
    const cancelPromise = new Promise((resolve) => { resolveCancel = resolve; });
    const errorBoth = (e) => { ctrlError.call(c1, e); ctrlError.call(c2, e); };
    function pull() {
      if (reading) { readAgain = true; return Promise.resolve(); }
      reading = true;
      promiseThen.call(readerRead.call(reader), ({ value, done }) => {
        if (done) {
          reading = false;
          if (!canceled1) ctrlClose.call(c1);
          if (!canceled2) ctrlClose.call(c2);
          if (!canceled1 || !canceled2) resolveCancel(undefined);
          return;
        }
        // Deferred as the spec's chunk steps are, so the branches see the chunk together.
        queueMicrotask(() => {
          readAgain = false;
          let value2 = value;
          if (!canceled2) {
            try {
              value2 = internal.structuredClone(value);
            } catch (e) {
              errorBoth(e);
              resolveCancel(readerCancel.call(reader, e));
              return;
            }
          }
          if (!canceled1) ctrlEnqueue.call(c1, value);
          if (!canceled2) ctrlEnqueue.call(c2, value2);
          reading = false;
          if (readAgain) pull();
        });
      }, () => { reading = false; });
      return Promise.resolve();
    }
    // The stream is locked to `reader`, so cancelling goes through it.
    function cancelBoth() {
      resolveCancel(readerCancel.call(reader, [reason1, reason2]));
    }
    const branch1 = createStream({
      start(c) { c1 = c; },
      pull,
      cancel(reason) { canceled1 = true; reason1 = reason; if (canceled2) cancelBoth(); return cancelPromise; },
    });
    const branch2 = createStream({
      start(c) { c2 = c; },
      pull,
      cancel(reason) { canceled2 = true; reason2 = reason; if (canceled1) cancelBoth(); return cancelPromise; },
    });
    promiseThen.call(readerClosed.call(reader), undefined, (r) => {
      errorBoth(r);
      if (!canceled1 || !canceled2) resolveCancel(undefined);
    });
    return [branch1, branch2];
  }

  // WebIDL async iterators inherit from %AsyncIteratorPrototype% and have a toStringTag; the
  // library's iterator prototype is a plain object. It is fixed up when the first iterator
  // is made, not here: making a stream at boot leaves garbage that costs every request
  // dirty pages.
  const libValues = ReadableStream.prototype.values;
  const AsyncIteratorPrototype = Object.getPrototypeOf(Object.getPrototypeOf((async function* () {}).prototype));
  let iteratorFixed = false;
  const values = {
    values(options = undefined) {
      const it = libValues.call(this, options);
      if (!iteratorFixed) {
        iteratorFixed = true;
        const proto = Object.getPrototypeOf(it);
        delete proto[Symbol.asyncIterator];
        Object.setPrototypeOf(proto, AsyncIteratorPrototype);
        Object.defineProperty(proto, Symbol.toStringTag, { value: "ReadableStream AsyncIterator", configurable: true });
      }
      return it;
    },
  }.values;
  Object.defineProperty(ReadableStream.prototype, "values", { value: values, writable: true, enumerable: true, configurable: true });
  Object.defineProperty(ReadableStream.prototype, Symbol.asyncIterator, { value: values, writable: true, enumerable: false, configurable: true });

  internal.streams = {
    isStream,
    isDisturbed,
    isLocked: (stream) => rsLocked.call(stream),
    readAllChunks,
    tee: (stream, cloneForBranch2 = false) => (cloneForBranch2 ? teeCloning(stream) : rsTee.call(stream)),
    // A byte stream (fetch bodies and Blob.stream() are "set up with byte reading support",
    // so BYOB readers work) of the chunks `nextChunk()` returns, one per pull, until it
    // returns null. Each chunk must be a fresh Uint8Array: enqueuing transfers its buffer.
    bytesFrom(nextChunk) {
      let done = false;
      return createStream({
        type: "bytes",
        pull(c) {
          let chunk = null;
          // enqueue() rejects empty chunks; they carry nothing, so they are skipped.
          if (!done) do chunk = nextChunk(); while (chunk !== null && chunk.byteLength === 0);
          if (chunk !== null) {
            byteEnqueue.call(c, chunk);
            return;
          }
          done = true;
          byteClose.call(c);
          // A pending read(view) is not settled by close(): it needs a zero-byte response.
          const request = byobRequest.call(c);
          if (request !== null) byobRespond.call(request, 0);
        },
        cancel() { done = true; },
      }, 0);
    },
    // A byte stream of `makeChunks()` (called at the first pull), then closed.
    fromChunks(makeChunks) {
      let chunks = null, next = 0;
      return internal.streams.bytesFrom(() => {
        if (chunks === null) chunks = makeChunks();
        return next < chunks.length ? chunks[next++] : null;
      });
    },
    // An already consumed body: closed and disturbed (reading a closed stream disturbs it).
    consumed() {
      const stream = createStream({ start(c) { ctrlClose.call(c); } }, 0);
      const reader = rsGetReader.call(stream);
      markHandled(readerRead.call(reader));
      readerRelease.call(reader);
      return stream;
    },
    // Fetch's "proxy": `stream` piped through an identity TransformStream (this locks and
    // disturbs it at once); the new stream is the transform's readable side.
    proxy(stream) {
      const ts = new TransformStream();
      markHandled(rsPipeTo.call(stream, tsWritable.call(ts)));
      return tsReadable.call(ts);
    },
  };

  // console.log shows the spec-visible state, not the library's internal fields.
  function defineInspect(C, describe) {
    Object.defineProperty(C.prototype, inspectSymbol, {
      value(depth, options, inspect) { return `${C.name} ${inspect(describe(this))}`; },
      writable: true, configurable: true,
    });
  }
  defineInspect(ReadableStream, (s) => ({ locked: s._reader !== undefined, state: s._state, supportsBYOB: isByteStream(s) }));
  defineInspect(WritableStream, (s) => ({ locked: s._writer !== undefined, state: s._state }));
  defineInspect(TransformStream, (s) => ({ readable: s._readable, writable: s._writable }));
  for (const C of [ReadableStreamDefaultReader, ReadableStreamBYOBReader, WritableStreamDefaultWriter]) {
    defineInspect(C, (r) => ({ closed: r._closedPromise }));
  }
  for (const C of [ReadableStreamDefaultController, ReadableByteStreamController, ReadableStreamBYOBRequest,
    WritableStreamDefaultController, TransformStreamDefaultController]) {
    defineInspect(C, () => ({}));
  }

  const classes = {
    ReadableStream, ReadableStreamDefaultReader, ReadableStreamBYOBReader, ReadableStreamBYOBRequest,
    ReadableStreamDefaultController, ReadableByteStreamController,
    WritableStream, WritableStreamDefaultWriter, WritableStreamDefaultController,
    TransformStream, TransformStreamDefaultController,
    ByteLengthQueuingStrategy, CountQueuingStrategy,
  };
  Object.assign(internal, classes);
  for (const name of Object.keys(classes)) defineGlobal(name, classes[name]);
})();
