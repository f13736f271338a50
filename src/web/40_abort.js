// AbortController and AbortSignal (DOM Standard).
(() => {
  "use strict";
  const internal = globalThis.__kvmjsInternal;
  const { defineGlobal, requireArgs, tag, DOMException, Event, EventTarget, toEnforcedULongLong, addTimer } = internal;

  const dispatch = EventTarget.prototype.dispatchEvent;
  const addListener = EventTarget.prototype.addEventListener;
  const removeListener = EventTarget.prototype.removeEventListener;
  const CREATE = Symbol("AbortSignal.create");

  let signalAbort, isSignal;

  class AbortSignal extends EventTarget {
    #aborted = false;
    #reason = undefined;
    #onabort = null;
    #onabortListener = null;
    // Signals made by any() that follow this one. Strong references: a dependent signal
    // with abort listeners must stay alive as long as its sources can still abort.
    #dependents = null;
    // Non-null only for signals made by any(): the (never dependent) signals they follow.
    #sources = null;

    constructor(key) {
      if (key !== CREATE) throw new TypeError("Illegal constructor.");
      super();
    }

    static {
      isSignal = (s) => s !== null && typeof s === "object" && #aborted in s;
      signalAbort = (signal, reason) => signal.#abort(reason);
    }

    get aborted() { return this.#aborted; }
    get reason() { return this.#reason; }

    throwIfAborted() {
      if (this.#aborted) throw this.#reason;
    }

    get onabort() { return this.#onabort; }
    set onabort(v) {
      this.#onabort = typeof v === "function" ? v : null;
      if (this.#onabort !== null && this.#onabortListener === null) {
        // Event handler attributes register one listener, kept while the handler is non-null.
        this.#onabortListener = (event) => {
          const handler = this.#onabort;
          if (handler !== null && handler.call(this, event) === false) event.preventDefault();
        };
        addListener.call(this, "abort", this.#onabortListener);
      } else if (this.#onabort === null && this.#onabortListener !== null) {
        removeListener.call(this, "abort", this.#onabortListener);
        this.#onabortListener = null;
      }
    }

    #abort(reason) {
      if (this.#aborted) return;
      this.#aborted = true;
      this.#reason = reason === undefined ? new DOMException("This operation was aborted", "AbortError") : reason;
      const toFire = [];
      if (this.#dependents !== null) {
        for (const d of this.#dependents) {
          if (d.#aborted) continue;
          d.#aborted = true;
          d.#reason = this.#reason;
          toFire.push(d);
        }
        this.#dependents = null;
      }
      dispatch.call(this, new Event("abort"));
      for (const d of toFire) dispatch.call(d, new Event("abort"));
    }

    static abort(reason = undefined) {
      const s = new AbortSignal(CREATE);
      s.#aborted = true;
      s.#reason = reason === undefined ? new DOMException("This operation was aborted", "AbortError") : reason;
      return s;
    }

    static timeout(milliseconds) {
      requireArgs(arguments.length, 1, "AbortSignal.timeout");
      const ms = toEnforcedULongLong(milliseconds, "AbortSignal.timeout");
      const s = new AbortSignal(CREATE);
      addTimer(() => s.#abort(new DOMException("The operation timed out.", "TimeoutError")), ms);
      return s;
    }

    static any(signals) {
      requireArgs(arguments.length, 1, "AbortSignal.any");
      if (signals === null || typeof signals !== "object" || typeof signals[Symbol.iterator] !== "function") {
        throw new TypeError("AbortSignal.any: argument must be an iterable of AbortSignal.");
      }
      const list = [...signals];
      for (const s of list) if (!isSignal(s)) throw new TypeError("AbortSignal.any: every item must be an AbortSignal.");
      const result = new AbortSignal(CREATE);
      for (const s of list) {
        if (s.#aborted) {
          result.#aborted = true;
          result.#reason = s.#reason;
          return result;
        }
      }
      result.#sources = new Set();
      for (const s of list) {
        // Following a dependent signal means following its sources, so chains stay flat.
        const sources = s.#sources !== null ? s.#sources : [s];
        for (const src of sources) {
          if (result.#sources.has(src)) continue;
          result.#sources.add(src);
          if (src.#dependents === null) src.#dependents = new Set();
          src.#dependents.add(result);
        }
      }
      return result;
    }

    [internal.inspectSymbol](depth, options, inspect) {
      return `AbortSignal ${inspect({ aborted: this.#aborted, reason: this.#reason })}`;
    }
  }
  tag(AbortSignal, "AbortSignal");

  class AbortController {
    #signal = new AbortSignal(CREATE);
    get signal() { return this.#signal; }
    abort(reason = undefined) { signalAbort(this.#signal, reason); }
  }
  tag(AbortController, "AbortController");

  Object.assign(internal, {
    AbortSignal, AbortController, isAbortSignal: isSignal,
    // A fresh signal that follows `signal` (Request keeps its own signal object).
    followSignal: (signal) => AbortSignal.any([signal]),
    newSignal: () => new AbortSignal(CREATE),
  });
  defineGlobal("AbortSignal", AbortSignal);
  defineGlobal("AbortController", AbortController);
})();
