// DOMException, Event, CustomEvent, EventTarget, reportError (WebIDL + DOM Standard).
(() => {
  "use strict";
  const native = globalThis.__native;
  const internal = globalThis.__kvmjsInternal;
  const { defineGlobal, requireArgs, tag, toDOMString, dict } = internal;

  const LEGACY_CODES = Object.assign(Object.create(null), {
    IndexSizeError: 1, HierarchyRequestError: 3, WrongDocumentError: 4, InvalidCharacterError: 5,
    NoModificationAllowedError: 7, NotFoundError: 8, NotSupportedError: 9, InUseAttributeError: 10,
    InvalidStateError: 11, SyntaxError: 12, InvalidModificationError: 13, NamespaceError: 14,
    InvalidAccessError: 15, TypeMismatchError: 17, SecurityError: 18, NetworkError: 19, AbortError: 20,
    URLMismatchError: 21, QuotaExceededError: 22, TimeoutError: 23, InvalidNodeTypeError: 24,
    DataCloneError: 25,
  });
  const CODE_CONSTANTS = [
    "INDEX_SIZE_ERR", "DOMSTRING_SIZE_ERR", "HIERARCHY_REQUEST_ERR", "WRONG_DOCUMENT_ERR",
    "INVALID_CHARACTER_ERR", "NO_DATA_ALLOWED_ERR", "NO_MODIFICATION_ALLOWED_ERR", "NOT_FOUND_ERR",
    "NOT_SUPPORTED_ERR", "INUSE_ATTRIBUTE_ERR", "INVALID_STATE_ERR", "SYNTAX_ERR",
    "INVALID_MODIFICATION_ERR", "NAMESPACE_ERR", "INVALID_ACCESS_ERR", "VALIDATION_ERR",
    "TYPE_MISMATCH_ERR", "SECURITY_ERR", "NETWORK_ERR", "ABORT_ERR", "URL_MISMATCH_ERR",
    "QUOTA_EXCEEDED_ERR", "TIMEOUT_ERR", "INVALID_NODE_TYPE_ERR", "DATA_CLONE_ERR",
  ];

  // WebIDL: DOMException.prototype inherits from Error.prototype, but the constructor itself
  // inherits from Function.prototype (not from Error), and name/message/code are enumerable
  // prototype accessors. A stack is still captured, as in browsers.
  const domExceptionState = new WeakMap();
  const domState = (e) => {
    const s = domExceptionState.get(e);
    if (s === undefined) throw new TypeError("Illegal invocation: not a DOMException.");
    return s;
  };
  class DOMException {
    constructor(message = "", name = "Error") {
      domExceptionState.set(this, { message: toDOMString(message), name: toDOMString(name) });
      let stack = new Error().stack;
      if (typeof stack === "string") {
        // V8-style stacks start with a header line; give it this exception's name and message.
        if (stack !== "" && !/^\s*at\s/.test(stack)) {
          const s = domExceptionState.get(this);
          const nl = stack.indexOf("\n");
          stack = (s.message === "" ? s.name : `${s.name}: ${s.message}`) + (nl === -1 ? "" : stack.slice(nl));
        }
        Object.defineProperty(this, "stack", { value: stack, writable: true, configurable: true, enumerable: false });
      }
    }
    get name() { return domState(this).name; }
    get message() { return domState(this).message; }
    get code() { return LEGACY_CODES[domState(this).name] ?? 0; }
  }
  Object.setPrototypeOf(DOMException.prototype, Error.prototype);
  for (const key of ["name", "message", "code"]) {
    const desc = Object.getOwnPropertyDescriptor(DOMException.prototype, key);
    Object.defineProperty(DOMException.prototype, key, { get: desc.get, set: undefined, enumerable: true, configurable: true });
  }
  internal.isDOMException = (v) => domExceptionState.has(v);
  CODE_CONSTANTS.forEach((name, i) => {
    const desc = { value: i + 1, writable: false, enumerable: true, configurable: false };
    Object.defineProperty(DOMException, name, desc);
    Object.defineProperty(DOMException.prototype, name, desc);
  });
  tag(DOMException, "DOMException");

  // Cross-file access to event state (dispatch flags etc.); throws TypeError for non-events.
  let eventState;

  class Event {
    #s;
    constructor(type, eventInitDict = undefined) {
      requireArgs(arguments.length, 1, "Event constructor");
      const init = dict(eventInitDict, "Event constructor");
      this.#s = {
        type: toDOMString(type),
        bubbles: !!init.bubbles,
        cancelable: !!init.cancelable,
        composed: !!init.composed,
        target: null,
        currentTarget: null,
        phase: 0,
        canceled: false,
        stop: false,
        stopImmediate: false,
        dispatching: false,
        inPassiveListener: false,
        timeStamp: native.now(),
      };
    }
    static { eventState = (e) => e.#s; }
    get type() { return this.#s.type; }
    get target() { return this.#s.target; }
    get srcElement() { return this.#s.target; }
    get currentTarget() { return this.#s.currentTarget; }
    composedPath() {
      const s = this.#s;
      return s.dispatching && s.currentTarget !== null ? [s.currentTarget] : [];
    }
    get eventPhase() { return this.#s.phase; }
    stopPropagation() { this.#s.stop = true; }
    get cancelBubble() { return this.#s.stop; }
    set cancelBubble(v) { if (v) this.#s.stop = true; }
    stopImmediatePropagation() { this.#s.stop = true; this.#s.stopImmediate = true; }
    get bubbles() { return this.#s.bubbles; }
    get cancelable() { return this.#s.cancelable; }
    get returnValue() { return !this.#s.canceled; }
    set returnValue(v) { if (!v) this.preventDefault(); }
    preventDefault() {
      const s = this.#s;
      if (s.cancelable && !s.inPassiveListener) s.canceled = true;
    }
    get defaultPrevented() { return this.#s.canceled; }
    get composed() { return this.#s.composed; }
    // DEVIATION: isTrusted is a prototype getter rather than an [LegacyUnforgeable] own property.
    get isTrusted() { return false; }
    get timeStamp() { return this.#s.timeStamp; }
    initEvent(type, bubbles = false, cancelable = false) {
      requireArgs(arguments.length, 1, "Event.initEvent");
      const s = this.#s;
      if (s.dispatching) return;
      Object.assign(s, {
        type: toDOMString(type), bubbles: !!bubbles, cancelable: !!cancelable,
        stop: false, stopImmediate: false, canceled: false, target: null,
      });
    }
    [internal.inspectSymbol](depth, options, inspect) {
      const s = this.#s;
      return `${this.constructor?.name ?? "Event"} ${inspect({ type: s.type, defaultPrevented: s.canceled, cancelable: s.cancelable, timeStamp: s.timeStamp })}`;
    }
  }
  ["NONE", "CAPTURING_PHASE", "AT_TARGET", "BUBBLING_PHASE"].forEach((name, i) => {
    const desc = { value: i, writable: false, enumerable: true, configurable: false };
    Object.defineProperty(Event, name, desc);
    Object.defineProperty(Event.prototype, name, desc);
  });
  tag(Event, "Event");

  class CustomEvent extends Event {
    #detail;
    constructor(type, eventInitDict = undefined) {
      requireArgs(arguments.length, 1, "CustomEvent constructor");
      super(type, eventInitDict);
      const init = dict(eventInitDict, "CustomEvent constructor");
      this.#detail = init.detail === undefined ? null : init.detail;
    }
    get detail() { return this.#detail; }
    initCustomEvent(type, bubbles = false, cancelable = false, detail = null) {
      requireArgs(arguments.length, 1, "CustomEvent.initCustomEvent");
      if (eventState(this).dispatching) return;
      this.initEvent(type, bubbles, cancelable);
      this.#detail = detail;
    }
  }
  tag(CustomEvent, "CustomEvent");

  function flattenOptions(options) {
    if (options === undefined || options === null) return { capture: false, once: false, passive: false, signal: undefined };
    if (typeof options !== "object" && typeof options !== "function") {
      return { capture: !!options, once: false, passive: false, signal: undefined };
    }
    const capture = !!options.capture;
    const once = !!options.once;
    const passive = !!options.passive;
    const signal = options.signal;
    if (signal !== undefined && !(internal.isAbortSignal && internal.isAbortSignal(signal))) {
      throw new TypeError("addEventListener: 'signal' member is not of type AbortSignal.");
    }
    return { capture, once, passive, signal };
  }

  // Listener lists live in a WeakMap (not a private field) so that the global object, which
  // is not created by the EventTarget constructor, can be made an EventTarget too.
  const listenerMaps = new WeakMap(); // target -> Map(type -> array of listener records)
  const listenersOf = (target, what) => {
    // WebIDL: an operation on the global called with an undefined/null `this` uses the global.
    if (target === undefined || target === null) target = globalThis;
    const m = listenerMaps.get(target);
    if (m === undefined) throw new TypeError(`${what}: 'this' is not an EventTarget.`);
    return m;
  };

  function removeListener(listeners, type, record) {
    record.removed = true;
    const list = listeners.get(type);
    if (list === undefined) return;
    const i = list.indexOf(record);
    if (i !== -1) list.splice(i, 1);
    if (list.length === 0) listeners.delete(type);
  }

  function invokeListeners(target, listeners, snapshot, event, s, capturePass) {
    if (s.stop) return;
    for (const l of snapshot) {
      if (l.removed || l.capture !== capturePass) continue;
      if (l.once) removeListener(listeners, s.type, l);
      s.inPassiveListener = l.passive;
      try {
        const cb = l.callback;
        if (typeof cb === "function") {
          cb.call(target, event);
        } else {
          const handleEvent = cb.handleEvent;
          if (typeof handleEvent !== "function") throw new TypeError("listener.handleEvent is not a function.");
          handleEvent.call(cb, event);
        }
      } catch (e) {
        reportError(e);
      }
      s.inPassiveListener = false;
      if (s.stopImmediate) break;
    }
  }

  class EventTarget {
    constructor() {
      listenerMaps.set(this, new Map());
    }

    addEventListener(type, callback, options = undefined) {
      const listeners = listenersOf(this, "EventTarget.addEventListener");
      requireArgs(arguments.length, 2, "EventTarget.addEventListener");
      type = toDOMString(type);
      const { capture, once, passive, signal } = flattenOptions(options);
      if (callback === null || callback === undefined) return;
      if (typeof callback !== "function" && typeof callback !== "object") {
        throw new TypeError("addEventListener: listener must be a function or an object.");
      }
      if (signal !== undefined && signal.aborted) return;
      let list = listeners.get(type);
      if (list === undefined) { list = []; listeners.set(type, list); }
      for (const l of list) if (l.callback === callback && l.capture === capture) return;
      const record = { callback, capture, once, passive, removed: false };
      list.push(record);
      if (signal !== undefined) {
        signal.addEventListener("abort", () => removeListener(listeners, type, record));
      }
    }

    removeEventListener(type, callback, options = undefined) {
      const listeners = listenersOf(this, "EventTarget.removeEventListener");
      requireArgs(arguments.length, 2, "EventTarget.removeEventListener");
      type = toDOMString(type);
      const capture = options !== null && (typeof options === "object" || typeof options === "function")
        ? !!options.capture : !!options;
      const list = listeners.get(type);
      if (list === undefined) return;
      for (const l of list) {
        if (l.callback === callback && l.capture === capture) { removeListener(listeners, type, l); return; }
      }
    }

    dispatchEvent(event) {
      const listeners = listenersOf(this, "EventTarget.dispatchEvent");
      const target = this ?? globalThis;
      requireArgs(arguments.length, 1, "EventTarget.dispatchEvent");
      let s;
      try { s = eventState(event); } catch { throw new TypeError("dispatchEvent: parameter 1 is not of type 'Event'."); }
      if (s.dispatching) throw new DOMException("The event is already being dispatched.", "InvalidStateError");
      s.dispatching = true;
      s.target = target;
      const list = listeners.get(s.type);
      if (list !== undefined) {
        // Listeners added during dispatch must not run; removed ones are skipped via `removed`.
        const snapshot = list.slice();
        s.currentTarget = target;
        s.phase = 2; // AT_TARGET: capture listeners first, then the others (DOM "invoke" twice)
        invokeListeners(target, listeners, snapshot, event, s, true);
        invokeListeners(target, listeners, snapshot, event, s, false);
      }
      s.phase = 0;
      s.currentTarget = null;
      s.dispatching = false;
      s.stop = false;
      s.stopImmediate = false;
      return !s.canceled;
    }
  }
  tag(EventTarget, "EventTarget");

  // Whether `e` is QuickJS running out of memory: an InternalError, or null when even that
  // could not be allocated (an app's own `throw null` leaves the heap unexhausted).
  const InternalErrorClass = globalThis.InternalError;
  const isOutOfMemory = (e) =>
    typeof native.heapExhausted === "function" &&
    ((e === null && native.heapExhausted()) ||
      (typeof InternalErrorClass === "function" && e instanceof InternalErrorClass && e.message === "out of memory"));

  // HTML ErrorEvent (no MessageEvent-style constructor checks beyond the dictionary).
  class ErrorEvent extends Event {
    #init;
    constructor(type, eventInitDict = undefined) {
      requireArgs(arguments.length, 1, "ErrorEvent constructor");
      super(type, eventInitDict);
      const init = dict(eventInitDict, "ErrorEvent constructor");
      this.#init = {
        message: init.message === undefined ? "" : toDOMString(init.message),
        filename: init.filename === undefined ? "" : internal.toUSVString(init.filename),
        lineno: init.lineno === undefined ? 0 : init.lineno >>> 0,
        colno: init.colno === undefined ? 0 : init.colno >>> 0,
        error: init.error,
      };
    }
    get message() { return this.#init.message; }
    get filename() { return this.#init.filename; }
    get lineno() { return this.#init.lineno; }
    get colno() { return this.#init.colno; }
    get error() { return this.#init.error; }
  }
  tag(ErrorEvent, "ErrorEvent");

  // HTML "report an exception": an "error" ErrorEvent is fired at the global scope; unless a
  // listener cancels it, the exception is logged. An exception thrown while reporting one
  // (by an "error" listener) is only logged. Running out of memory (in a timer, listener or
  // microtask) also ends the request: it answers 500 "out of memory", as it would from the
  // handler, without firing an event.
  let reportingError = false;
  function reportError(e) {
    requireArgs(arguments.length, 1, "reportError");
    if (isOutOfMemory(e)) native.outOfMemory();
    if (!reportingError) {
      let notHandled = true;
      reportingError = true;
      try {
        let message = "";
        try { message = e instanceof Error ? `Uncaught ${e.name}: ${e.message}` : `Uncaught ${String(e)}`; } catch { message = "Uncaught exception"; }
        const event = new ErrorEvent("error", { cancelable: true, message, error: e });
        notHandled = EventTarget.prototype.dispatchEvent.call(globalThis, event);
      } catch (inner) {
        if (isOutOfMemory(inner)) native.outOfMemory();
      } finally {
        reportingError = false;
      }
      if (!notHandled) return;
    }
    try {
      const c = globalThis.console;
      if (c && typeof c.error === "function") { c.error("Uncaught", e); return; }
    } catch { /* fall through to the raw logger */ }
    let text;
    try { text = e instanceof Error ? `${e.name}: ${e.message}` : String(e); } catch { text = "<unprintable>"; }
    native.log(3, internal.toUSVString(`Uncaught ${text}`));
  }

  Object.assign(internal, { DOMException, Event, CustomEvent, ErrorEvent, EventTarget, reportError, eventState });
  defineGlobal("DOMException", DOMException);
  defineGlobal("Event", Event);
  defineGlobal("CustomEvent", CustomEvent);
  defineGlobal("EventTarget", EventTarget);
  defineGlobal("ErrorEvent", ErrorEvent);
  defineGlobal("reportError", reportError);

  // The global scope is an EventTarget (as in Workers and deno): its prototype chain goes
  // through EventTarget.prototype, and it has its own listener list.
  listenerMaps.set(globalThis, new Map());
  try {
    // EventTarget.prototype goes just before Object.prototype (QuickJS: right after the global).
    let holder = globalThis;
    for (let p = Object.getPrototypeOf(holder); p !== null && p !== Object.prototype; p = Object.getPrototypeOf(p)) holder = p;
    if (Object.getPrototypeOf(holder) === Object.prototype) Object.setPrototypeOf(holder, EventTarget.prototype);
  } catch { /* an immutable prototype: fall back to own methods below */ }
  if (!(globalThis instanceof EventTarget)) {
    for (const key of ["addEventListener", "removeEventListener", "dispatchEvent"]) {
      defineGlobal(key, EventTarget.prototype[key]);
    }
  }
})();
