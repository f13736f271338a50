// ReadableStream with default controller and default reader (Streams Standard).
// The abstract operations keep the spec's names and work on plain internal records
// (S = stream, C = controller, R = reader); public objects hold a private pointer to them.
(() => {
  "use strict";
  const internal = globalThis.__kvmjsInternal;
  const { defineGlobal, requireArgs, tag, dict, toDOMString, queueMicrotask } = internal;

  const KEY = Symbol("streams internal");
  const noop = () => {};
  const resolvedUndefined = () => Promise.resolve(undefined);

  function deferred() {
    let resolve, reject;
    const promise = new Promise((a, b) => { resolve = a; reject = b; });
    return { promise, resolve, reject };
  }
  // Rejections the user may never observe must not be reported as unhandled.
  function markHandled(p) { p.then(undefined, noop); }
  function promiseCall(fn, thisArg, arg) {
    try { return Promise.resolve(fn.call(thisArg, arg)); } catch (e) { return Promise.reject(e); }
  }

  // ---- stream-level operations ----

  function newStreamRecord() {
    return { state: "readable", reader: undefined, storedError: undefined, disturbed: false, controller: undefined, obj: undefined };
  }

  function streamClose(S) {
    S.state = "closed";
    const R = S.reader;
    if (R === undefined) return;
    R.closed.resolve(undefined);
    const requests = R.readRequests;
    R.readRequests = [];
    for (const req of requests) req.close();
  }

  function streamError(S, e) {
    S.state = "errored";
    S.storedError = e;
    const R = S.reader;
    if (R === undefined) return;
    R.closed.reject(e);
    markHandled(R.closed.promise);
    const requests = R.readRequests;
    R.readRequests = [];
    for (const req of requests) req.error(e);
  }

  function streamCancel(S, reason) {
    S.disturbed = true;
    if (S.state === "closed") return Promise.resolve(undefined);
    if (S.state === "errored") return Promise.reject(S.storedError);
    streamClose(S);
    const C = S.controller;
    resetQueue(C);
    const result = C.cancelAlgorithm(reason);
    clearAlgorithms(C);
    return result.then(noop);
  }

  function hasReadRequests(S) {
    return S.reader !== undefined && S.reader.readRequests.length > 0;
  }

  // ---- default controller operations ----

  function resetQueue(C) { C.queue = []; C.queueTotalSize = 0; }

  function clearAlgorithms(C) {
    C.pullAlgorithm = undefined;
    C.cancelAlgorithm = undefined;
    C.strategySizeAlgorithm = undefined;
  }

  function canCloseOrEnqueue(C) {
    return !C.closeRequested && C.stream.state === "readable";
  }

  function getDesiredSize(C) {
    const state = C.stream.state;
    if (state === "errored") return null;
    if (state === "closed") return 0;
    return C.strategyHWM - C.queueTotalSize;
  }

  function shouldCallPull(C) {
    if (!canCloseOrEnqueue(C) || !C.started) return false;
    if (hasReadRequests(C.stream)) return true;
    return getDesiredSize(C) > 0;
  }

  function callPullIfNeeded(C) {
    if (!shouldCallPull(C)) return;
    if (C.pulling) { C.pullAgain = true; return; }
    C.pulling = true;
    C.pullAlgorithm().then(() => {
      C.pulling = false;
      if (C.pullAgain) { C.pullAgain = false; callPullIfNeeded(C); }
    }, (e) => controllerError(C, e));
  }

  function controllerClose(C) {
    if (!canCloseOrEnqueue(C)) return;
    C.closeRequested = true;
    if (C.queue.length === 0) {
      clearAlgorithms(C);
      streamClose(C.stream);
    }
  }

  function controllerEnqueue(C, chunk) {
    if (!canCloseOrEnqueue(C)) return;
    const S = C.stream;
    if (hasReadRequests(S)) {
      S.reader.readRequests.shift().chunk(chunk);
    } else {
      let size;
      try { size = C.strategySizeAlgorithm(chunk); } catch (e) { controllerError(C, e); throw e; }
      if (typeof size !== "number" || !(size >= 0) || size === Infinity) {
        const e = new RangeError("The queuing strategy's size function must return a finite, non-negative number.");
        controllerError(C, e);
        throw e;
      }
      C.queue.push({ value: chunk, size });
      C.queueTotalSize += size;
    }
    callPullIfNeeded(C);
  }

  function controllerError(C, e) {
    const S = C.stream;
    if (S.state !== "readable") return;
    resetQueue(C);
    clearAlgorithms(C);
    streamError(S, e);
  }

  function dequeue(C) {
    const { value, size } = C.queue.shift();
    C.queueTotalSize -= size;
    if (C.queueTotalSize < 0) C.queueTotalSize = 0; // rounding errors
    return value;
  }

  function pullSteps(C, req) {
    const S = C.stream;
    if (C.queue.length > 0) {
      const chunk = dequeue(C);
      if (C.closeRequested && C.queue.length === 0) {
        clearAlgorithms(C);
        streamClose(S);
      } else {
        callPullIfNeeded(C);
      }
      req.chunk(chunk);
    } else {
      S.reader.readRequests.push(req);
      callPullIfNeeded(C);
    }
  }

  function setUpController(S, C, startAlgorithm, pullAlgorithm, cancelAlgorithm, hwm, sizeAlgorithm) {
    Object.assign(C, {
      queue: [], queueTotalSize: 0, started: false, closeRequested: false, pullAgain: false, pulling: false,
      strategySizeAlgorithm: sizeAlgorithm, strategyHWM: hwm, pullAlgorithm, cancelAlgorithm,
    });
    S.controller = C;
    const startResult = startAlgorithm();
    Promise.resolve(startResult).then(() => {
      C.started = true;
      callPullIfNeeded(C);
    }, (r) => controllerError(C, r));
  }

  function newControllerRecord(S, isBytes) {
    const C = { stream: S, isBytes, obj: undefined };
    C.obj = new ReadableStreamDefaultController(KEY, C);
    return C;
  }

  // CreateReadableStream: for internal sources (tee branches, from(), fetch bodies).
  function createStream(startAlgorithm, pullAlgorithm, cancelAlgorithm, hwm = 1, sizeAlgorithm = () => 1) {
    const S = newStreamRecord();
    new ReadableStream(KEY, S);
    setUpController(S, newControllerRecord(S, false), startAlgorithm, pullAlgorithm, cancelAlgorithm, hwm, sizeAlgorithm);
    return S;
  }

  // ---- reader operations ----

  function readerInit(R, S) {
    R.stream = S;
    S.reader = R;
    R.closed = deferred();
    if (S.state === "closed") {
      R.closed.resolve(undefined);
    } else if (S.state === "errored") {
      R.closed.reject(S.storedError);
      markHandled(R.closed.promise);
    }
  }

  function acquireReader(S, obj = undefined) {
    if (S.reader !== undefined) throw new TypeError("ReadableStream is locked.");
    const R = { stream: undefined, closed: undefined, readRequests: [], obj };
    readerInit(R, S);
    return R;
  }

  function readerRead(R, req) {
    const S = R.stream;
    S.disturbed = true;
    if (S.state === "closed") req.close();
    else if (S.state === "errored") req.error(S.storedError);
    else pullSteps(S.controller, req);
  }

  function readerRelease(R) {
    const S = R.stream;
    const e = new TypeError("The reader's lock was released.");
    if (S.state === "readable") {
      R.closed.reject(e);
    } else {
      R.closed = deferred();
      R.closed.reject(e);
    }
    markHandled(R.closed.promise);
    S.reader = undefined;
    R.stream = undefined;
    const requests = R.readRequests;
    R.readRequests = [];
    for (const req of requests) req.error(new TypeError("The reader's lock was released."));
  }

  // One read as a promise of { value, done }.
  function readOnce(R) {
    const d = deferred();
    readerRead(R, {
      chunk: (value) => d.resolve({ value, done: false }),
      close: () => d.resolve({ value: undefined, done: true }),
      error: (e) => d.reject(e),
    });
    return d.promise;
  }

  // ---- tee (ReadableStreamDefaultTee; cloneForBranch2 is true for "tee a ReadableStream",
  // as fetch's "clone a body" uses: branch 2 then gets a structured clone of each chunk) ----

  function tee(S, cloneForBranch2 = false) {
    const R = acquireReader(S);
    let reading = false, readAgain = false, canceled1 = false, canceled2 = false;
    let reason1, reason2, branch1, branch2;
    const cancelDone = deferred();
    function pull() {
      if (reading) { readAgain = true; return Promise.resolve(); }
      reading = true;
      readerRead(R, {
        chunk(chunk) {
          // Deferred so a synchronously available chunk does not re-enter pull().
          queueMicrotask(() => {
            readAgain = false;
            let chunk2 = chunk;
            if (!canceled2 && cloneForBranch2) {
              try {
                chunk2 = internal.structuredClone(chunk);
              } catch (e) {
                controllerError(branch1.controller, e);
                controllerError(branch2.controller, e);
                cancelDone.resolve(streamCancel(S, e));
                return;
              }
            }
            if (!canceled1) controllerEnqueue(branch1.controller, chunk);
            if (!canceled2) controllerEnqueue(branch2.controller, chunk2);
            reading = false;
            if (readAgain) pull();
          });
        },
        close() {
          reading = false;
          if (!canceled1) controllerClose(branch1.controller);
          if (!canceled2) controllerClose(branch2.controller);
          if (!canceled1 || !canceled2) cancelDone.resolve(undefined);
        },
        error() { reading = false; },
      });
      return Promise.resolve();
    }
    function cancel1(reason) {
      canceled1 = true;
      reason1 = reason;
      if (canceled2) cancelDone.resolve(streamCancel(S, [reason1, reason2]));
      return cancelDone.promise;
    }
    function cancel2(reason) {
      canceled2 = true;
      reason2 = reason;
      if (canceled1) cancelDone.resolve(streamCancel(S, [reason1, reason2]));
      return cancelDone.promise;
    }
    branch1 = createStream(noop, pull, cancel1);
    branch2 = createStream(noop, pull, cancel2);
    R.closed.promise.then(undefined, (r) => {
      controllerError(branch1.controller, r);
      controllerError(branch2.controller, r);
      if (!canceled1 || !canceled2) cancelDone.resolve(undefined);
    });
    return [branch1, branch2];
  }

  // ---- async iteration ----

  const AsyncIteratorPrototype = Object.getPrototypeOf(Object.getPrototypeOf((async function* () {}).prototype));
  const iteratorStates = new WeakMap();

  function iterNext(st) {
    if (st.finished) return Promise.resolve({ value: undefined, done: true });
    const R = st.reader;
    const d = deferred();
    readerRead(R, {
      chunk: (value) => d.resolve({ value, done: false }),
      close: () => { readerRelease(R); st.finished = true; d.resolve({ value: undefined, done: true }); },
      error: (e) => { readerRelease(R); st.finished = true; d.reject(e); },
    });
    return d.promise;
  }

  function iterReturn(st, value) {
    if (st.finished) return Promise.resolve({ value, done: true });
    st.finished = true;
    const R = st.reader;
    if (!st.preventCancel) {
      const result = streamCancel(R.stream, value);
      readerRelease(R);
      return result.then(() => ({ value, done: true }));
    }
    readerRelease(R);
    return Promise.resolve({ value, done: true });
  }

  // next()/return() calls are serialised on the previous call's promise (WebIDL async iterators).
  function chain(self, step) {
    const st = iteratorStates.get(self);
    if (st === undefined) return Promise.reject(new TypeError("Not a ReadableStream async iterator."));
    const run = () => step(st);
    st.ongoing = st.ongoing === undefined ? run() : st.ongoing.then(run, run);
    return st.ongoing;
  }

  const StreamAsyncIteratorPrototype = Object.create(AsyncIteratorPrototype, {
    next: { value: function next() { return chain(this, iterNext); }, writable: true, configurable: true, enumerable: true },
    return: { value: function (value = undefined) { return chain(this, (st) => iterReturn(st, value)); }, writable: true, configurable: true, enumerable: true },
    [Symbol.toStringTag]: { value: "ReadableStream AsyncIterator", configurable: true },
  });

  // ---- public classes ----

  let streamOf, isStream;

  class ReadableStream {
    #i;

    constructor(underlyingSource = undefined, strategy = undefined) {
      if (underlyingSource === KEY) { this.#i = strategy; strategy.obj = this; return; }
      if (underlyingSource !== undefined && underlyingSource !== null &&
          typeof underlyingSource !== "object" && typeof underlyingSource !== "function") {
        throw new TypeError("ReadableStream constructor: underlyingSource must be an object.");
      }
      const src = underlyingSource ?? {};
      const st = dict(strategy, "ReadableStream constructor");
      const cancel = src.cancel, pull = src.pull, start = src.start, type = src.type;
      for (const [name, fn] of [["cancel", cancel], ["pull", pull], ["start", start]]) {
        if (fn !== undefined && typeof fn !== "function") throw new TypeError(`ReadableStream constructor: underlyingSource.${name} must be a function.`);
      }
      const hwmInit = st.highWaterMark, size = st.size;
      if (size !== undefined && typeof size !== "function") throw new TypeError("ReadableStream constructor: strategy.size must be a function.");
      let isBytes = false;
      if (type !== undefined) {
        if (toDOMString(type) !== "bytes") throw new TypeError(`ReadableStream constructor: invalid type '${type}'.`);
        // DEVIATION: "bytes" streams use the default controller (no BYOB reader, no
        // byobRequest, chunks are not transferred) but do insist on ArrayBufferView chunks.
        if (size !== undefined) throw new RangeError("ReadableStream constructor: byte streams cannot have a size function.");
        isBytes = true;
      }
      const hwm = extractHighWaterMark(hwmInit, isBytes ? 0 : 1);
      const sizeAlgorithm = size === undefined ? () => 1 : (chunk) => size(chunk);
      const S = newStreamRecord();
      S.obj = this;
      this.#i = S;
      const C = newControllerRecord(S, isBytes);
      setUpController(S, C,
        start ? () => start.call(src, C.obj) : noop,
        pull ? () => promiseCall(pull, src, C.obj) : resolvedUndefined,
        cancel ? (reason) => promiseCall(cancel, src, reason) : resolvedUndefined,
        hwm, sizeAlgorithm);
    }

    static {
      streamOf = (s) => s.#i;
      isStream = (v) => v !== null && typeof v === "object" && #i in v;
    }

    get locked() { return this.#i.reader !== undefined; }

    cancel(reason = undefined) {
      let S;
      try { S = this.#i; } catch (e) { return Promise.reject(e); }
      if (S.reader !== undefined) return Promise.reject(new TypeError("Cannot cancel a locked ReadableStream."));
      return streamCancel(S, reason);
    }

    getReader(options = undefined) {
      const mode = dict(options, "ReadableStream.getReader").mode;
      if (mode !== undefined) {
        // DEVIATION: BYOB readers are not supported.
        throw new TypeError(toDOMString(mode) === "byob"
          ? "ReadableStream.getReader: BYOB readers are not supported."
          : `ReadableStream.getReader: invalid mode '${mode}'.`);
      }
      return new ReadableStreamDefaultReader(this);
    }

    tee() {
      const [a, b] = tee(this.#i);
      return [a.obj, b.obj];
    }

    values(options = undefined) {
      const preventCancel = !!dict(options, "ReadableStream.values").preventCancel;
      const R = acquireReader(this.#i);
      const it = Object.create(StreamAsyncIteratorPrototype);
      iteratorStates.set(it, { reader: R, preventCancel, finished: false, ongoing: undefined });
      return it;
    }

    static from(asyncIterable) {
      requireArgs(arguments.length, 1, "ReadableStream.from");
      if (asyncIterable === null || asyncIterable === undefined) throw new TypeError("ReadableStream.from: argument is not iterable.");
      let iterator;
      let isSync = false;
      const asyncMethod = asyncIterable[Symbol.asyncIterator];
      if (asyncMethod !== undefined && asyncMethod !== null) {
        if (typeof asyncMethod !== "function") throw new TypeError("ReadableStream.from: [Symbol.asyncIterator] is not a function.");
        iterator = asyncMethod.call(asyncIterable);
      } else {
        const syncMethod = asyncIterable[Symbol.iterator];
        if (typeof syncMethod !== "function") throw new TypeError("ReadableStream.from: argument is not iterable.");
        iterator = syncMethod.call(asyncIterable);
        isSync = true;
      }
      if (iterator === null || (typeof iterator !== "object" && typeof iterator !== "function")) {
        throw new TypeError("ReadableStream.from: the iterator is not an object.");
      }
      const nextMethod = iterator.next;
      let S;
      const pull = () => {
        let result;
        try { result = nextMethod.call(iterator); } catch (e) { return Promise.reject(e); }
        return Promise.resolve(result).then((r) => {
          if (r === null || (typeof r !== "object" && typeof r !== "function")) throw new TypeError("ReadableStream.from: iterator result is not an object.");
          if (r.done) { controllerClose(S.controller); return undefined; }
          // Sync iterators go through CreateAsyncFromSyncIterator, which awaits values.
          if (isSync) return Promise.resolve(r.value).then((v) => controllerEnqueue(S.controller, v));
          controllerEnqueue(S.controller, r.value);
          return undefined;
        });
      };
      const cancel = (reason) => {
        let ret;
        try {
          ret = iterator.return;
          if (ret === undefined || ret === null) return Promise.resolve(undefined);
          return Promise.resolve(ret.call(iterator, reason)).then((r) => {
            if (r === null || (typeof r !== "object" && typeof r !== "function")) throw new TypeError("ReadableStream.from: iterator.return() result is not an object.");
          });
        } catch (e) {
          return Promise.reject(e);
        }
      };
      S = createStream(noop, pull, cancel, 0);
      return S.obj;
    }

    [internal.inspectSymbol](depth, options, inspect) {
      const S = this.#i;
      return `ReadableStream ${inspect({ locked: S.reader !== undefined, state: S.state, supportsBYOB: false })}`;
    }
  }
  Object.defineProperty(ReadableStream.prototype, Symbol.asyncIterator, {
    value: ReadableStream.prototype.values, writable: true, configurable: true,
  });
  tag(ReadableStream, "ReadableStream");
  // DEVIATION: pipeTo/pipeThrough are absent (no WritableStream/TransformStream here).

  function extractHighWaterMark(v, fallback) {
    if (v === undefined) return fallback;
    const n = Number(v);
    if (Number.isNaN(n) || n < 0) throw new RangeError("ReadableStream constructor: highWaterMark must be a non-negative number.");
    return n;
  }

  class ReadableStreamDefaultController {
    #i;
    constructor(key = undefined, C = undefined) {
      if (key !== KEY) throw new TypeError("Illegal constructor.");
      this.#i = C;
    }
    get desiredSize() { return getDesiredSize(this.#i); }
    close() {
      const C = this.#i;
      if (!canCloseOrEnqueue(C)) throw new TypeError("The stream is not in a state that permits close.");
      controllerClose(C);
    }
    enqueue(chunk = undefined) {
      const C = this.#i;
      if (C.isBytes && !ArrayBuffer.isView(chunk)) throw new TypeError("Byte streams only accept ArrayBufferView chunks.");
      if (!canCloseOrEnqueue(C)) throw new TypeError("The stream is not in a state that permits enqueue.");
      controllerEnqueue(C, chunk);
    }
    error(e = undefined) {
      controllerError(this.#i, e);
    }
  }
  tag(ReadableStreamDefaultController, "ReadableStreamDefaultController");

  class ReadableStreamDefaultReader {
    #i;
    constructor(stream) {
      requireArgs(arguments.length, 1, "ReadableStreamDefaultReader constructor");
      let S;
      try { S = streamOf(stream); } catch { throw new TypeError("ReadableStreamDefaultReader constructor: argument is not a ReadableStream."); }
      this.#i = acquireReader(S, this);
    }
    get closed() {
      let R;
      try { R = this.#i; } catch (e) { return Promise.reject(e); }
      return R.closed.promise;
    }
    read() {
      let R;
      try { R = this.#i; } catch (e) { return Promise.reject(e); }
      if (R.stream === undefined) return Promise.reject(new TypeError("The reader has been released."));
      return readOnce(R);
    }
    releaseLock() {
      const R = this.#i;
      if (R.stream !== undefined) readerRelease(R);
    }
    cancel(reason = undefined) {
      let R;
      try { R = this.#i; } catch (e) { return Promise.reject(e); }
      if (R.stream === undefined) return Promise.reject(new TypeError("The reader has been released."));
      return streamCancel(R.stream, reason);
    }
  }
  tag(ReadableStreamDefaultReader, "ReadableStreamDefaultReader");

  // Queuing strategies. Per spec each class has a single size function per global.
  function strategyHighWaterMark(init, what) {
    const opts = dict(init, what);
    if (opts.highWaterMark === undefined) throw new TypeError(`${what}: highWaterMark is required.`);
    return Number(opts.highWaterMark);
  }
  const byteLengthSize = { size(chunk) { return chunk.byteLength; } }.size;
  const countSize = { size() { return 1; } }.size;

  class ByteLengthQueuingStrategy {
    #hwm;
    constructor(init) {
      requireArgs(arguments.length, 1, "ByteLengthQueuingStrategy constructor");
      this.#hwm = strategyHighWaterMark(init, "ByteLengthQueuingStrategy constructor");
    }
    get highWaterMark() { return this.#hwm; }
    get size() { this.#hwm; return byteLengthSize; }
  }
  tag(ByteLengthQueuingStrategy, "ByteLengthQueuingStrategy");

  class CountQueuingStrategy {
    #hwm;
    constructor(init) {
      requireArgs(arguments.length, 1, "CountQueuingStrategy constructor");
      this.#hwm = strategyHighWaterMark(init, "CountQueuingStrategy constructor");
    }
    get highWaterMark() { return this.#hwm; }
    get size() { this.#hwm; return countSize; }
  }
  tag(CountQueuingStrategy, "CountQueuingStrategy");

  // Everything fetch needs from streams without going through patchable public methods.
  async function readAllChunks(stream) {
    const R = acquireReader(streamOf(stream));
    const chunks = [];
    for (;;) {
      const { value, done } = await readOnce(R);
      if (done) return chunks;
      chunks.push(value);
    }
  }
  internal.streams = {
    isStream,
    isDisturbed: (stream) => streamOf(stream).disturbed,
    isLocked: (stream) => streamOf(stream).reader !== undefined,
    readAllChunks,
    tee: (stream, cloneForBranch2 = false) => tee(streamOf(stream), cloneForBranch2).map((S) => S.obj),
    // A stream that hands out `chunks` (fresh copies each time) lazily, then closes.
    fromChunks(makeChunks) {
      let queue = null;
      const S = createStream(noop, () => {
        if (queue === null) queue = makeChunks();
        if (queue.length > 0) controllerEnqueue(S.controller, queue.shift());
        if (queue.length === 0) controllerClose(S.controller);
        return Promise.resolve();
      }, () => { queue = []; return Promise.resolve(); }, 0);
      return S.obj;
    },
    // An already consumed body: closed and disturbed.
    consumed() {
      const S = createStream(noop, resolvedUndefined, resolvedUndefined, 0);
      controllerClose(S.controller);
      S.disturbed = true;
      return S.obj;
    },
    // Locks `stream` and returns a new stream that forwards it (Request body "proxy").
    proxy(stream) {
      const R = acquireReader(streamOf(stream));
      // Like the spec's pipe into a TransformStream: the source counts as used at once.
      R.stream.disturbed = true;
      let S;
      S = createStream(noop, () => readOnce(R).then(({ value, done }) => {
        if (done) controllerClose(S.controller);
        else controllerEnqueue(S.controller, value);
      }), (reason) => streamCancel(R.stream, reason), 0);
      return S.obj;
    },
  };
  Object.assign(internal, { ReadableStream, ReadableStreamDefaultReader, ReadableStreamDefaultController });
  defineGlobal("ReadableStream", ReadableStream);
  defineGlobal("ReadableStreamDefaultReader", ReadableStreamDefaultReader);
  defineGlobal("ReadableStreamDefaultController", ReadableStreamDefaultController);
  defineGlobal("ByteLengthQueuingStrategy", ByteLengthQueuingStrategy);
  defineGlobal("CountQueuingStrategy", CountQueuingStrategy);
})();
