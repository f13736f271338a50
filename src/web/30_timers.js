// setTimeout/setInterval/clear*, queueMicrotask, and the host-facing timer driver.
// There is no event loop here: the host asks __kvmjsTimers.next() how long to wait and
// calls __kvmjsTimers.run() to fire what is due.
(() => {
  "use strict";
  const native = globalThis.__native;
  const internal = globalThis.__kvmjsInternal;
  const { defineGlobal, requireArgs, reportError } = internal;

  const timers = new Map(); // id -> { id, handler, args, delay, repeat, due, seq }
  let nextId = 1;
  let seq = 0;

  function addTimer(handler, delay, args, repeat) {
    // Ids stay positive 31-bit integers, as callers often store them in int fields.
    while (timers.has(nextId)) nextId = nextId >= 0x7fffffff ? 1 : nextId + 1;
    const id = nextId;
    nextId = nextId >= 0x7fffffff ? 1 : nextId + 1;
    timers.set(id, { id, handler, args, delay, repeat, due: native.now() + delay, seq: seq++ });
    return id;
  }

  function schedule(what, handler, timeout, args, repeat) {
    // DEVIATION: string handlers (eval'd code) are rejected instead of compiled.
    if (typeof handler !== "function") throw new TypeError(`${what}: callback must be a function.`);
    // WebIDL `long` conversion (wraps like ToInt32), then negative delays become 0.
    let delay = Number(timeout) | 0;
    if (delay < 0) delay = 0;
    return addTimer(handler, delay, args, repeat);
  }

  function setTimeout(handler, timeout = 0, ...args) {
    requireArgs(arguments.length, 1, "setTimeout");
    return schedule("setTimeout", handler, timeout, args, false);
  }

  function setInterval(handler, timeout = 0, ...args) {
    requireArgs(arguments.length, 1, "setInterval");
    return schedule("setInterval", handler, timeout, args, true);
  }

  // clearTimeout and clearInterval share one id space, as in HTML.
  function clearTimer(id) {
    const n = Number(id);
    if (Number.isInteger(n)) timers.delete(n);
  }
  function clearTimeout(id = 0) { clearTimer(id); }
  function clearInterval(id = 0) { clearTimer(id); }

  const resolved = Promise.resolve();
  const then = Promise.prototype.then;
  function queueMicrotask(callback) {
    requireArgs(arguments.length, 1, "queueMicrotask");
    if (typeof callback !== "function") throw new TypeError("queueMicrotask: callback must be a function.");
    then.call(resolved, () => {
      try { callback(); } catch (e) { reportError(e); }
    });
  }

  const driver = Object.freeze({
    next() {
      if (timers.size === 0) return -1;
      let min = Infinity;
      for (const t of timers.values()) if (t.due < min) min = t.due;
      const wait = min - native.now();
      return wait <= 0 ? 0 : Math.ceil(wait);
    },
    // Timers created or rescheduled while running are left for the next call, so a
    // zero-delay interval cannot spin forever inside one run().
    // DEVIATION: microtasks queued by a callback run after the whole batch (when the host
    // drains the job queue), not between two timers due in the same batch.
    run() {
      if (timers.size === 0) return 0;
      const now = native.now();
      const due = [];
      for (const t of timers.values()) if (t.due <= now) due.push(t);
      if (due.length === 0) return 0;
      due.sort((a, b) => a.due - b.due || a.seq - b.seq);
      let ran = 0;
      for (const t of due) {
        if (timers.get(t.id) !== t) continue; // cleared by an earlier callback
        if (!t.repeat) timers.delete(t.id);
        ran++;
        try {
          t.handler.apply(globalThis, t.args);
        } catch (e) {
          reportError(e);
        }
        if (t.repeat && timers.get(t.id) === t) {
          t.due = native.now() + t.delay;
          t.seq = seq++;
        }
      }
      return ran;
    },
    clear() { timers.clear(); },
  });
  Object.defineProperty(globalThis, "__kvmjsTimers", { value: driver, writable: false, configurable: true, enumerable: false });

  // Internal users (AbortSignal.timeout) need delays beyond the 31-bit `long` range.
  internal.addTimer = (fn, delay) => addTimer(fn, delay, [], false);
  internal.queueMicrotask = queueMicrotask;
  defineGlobal("setTimeout", setTimeout);
  defineGlobal("setInterval", setInterval);
  defineGlobal("clearTimeout", clearTimeout);
  defineGlobal("clearInterval", clearInterval);
  defineGlobal("queueMicrotask", queueMicrotask);
})();
