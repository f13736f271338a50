// Shared helpers of the Web API conformance tests (see ../webapi_tests.js).
// Timers: the prelude's driver __kvmjsTimers is visible only where nothing else runs timers
// (the Node harness); tests then drive time themselves. Inside the guest the host removes it
// from the global object and runs due timers whenever the job queue is empty.
export const timerDriver = globalThis.__kvmjsTimers;
export const hostBody = globalThis.__kvmjsBody;

export function show(v) {
  try { return typeof v === "string" ? JSON.stringify(v) : typeof v === "bigint" ? `${v}n` : String(v); } catch { return "<?>"; }
}
export function assert(cond, msg = "assertion failed") {
  if (!cond) throw new Error(msg);
}
export function assertEq(actual, expected, msg = "") {
  if (!Object.is(actual, expected)) throw new Error(`${msg ? msg + ": " : ""}expected ${show(expected)}, got ${show(actual)}`);
}
export function assertJson(actual, expected, msg = "") {
  assertEq(JSON.stringify(actual), JSON.stringify(expected), msg);
}
export function assertThrows(fn, Type, name) {
  try { fn(); } catch (e) {
    if (Type && !(e instanceof Type)) throw new Error(`expected ${Type.name}, got ${e && e.name}: ${e && e.message}`);
    if (name !== undefined && e.name !== name) throw new Error(`expected error name ${name}, got ${e.name}`);
    return e;
  }
  throw new Error(`expected ${Type ? Type.name : "an exception"}${name ? ` (${name})` : ""} to be thrown`);
}
export async function assertRejects(promise, Type, name) {
  try { await promise; } catch (e) {
    if (Type && !(e instanceof Type)) throw new Error(`expected rejection with ${Type.name}, got ${e && e.name}: ${e && e.message}`);
    if (name !== undefined && e.name !== name) throw new Error(`expected error name ${name}, got ${e.name}`);
    return e;
  }
  throw new Error("expected the promise to reject");
}
export const microtask = () => new Promise((r) => queueMicrotask(r));
export async function ticks(n = 10) { for (let i = 0; i < n; i++) await microtask(); }
// Settles `promise`, running microtasks and due timers meanwhile (bounded in time).
export async function drive(promise, maxMs = 3000) {
  if (!timerDriver) {
    let id;
    const limit = new Promise((_, reject) => { id = setTimeout(() => reject(new Error("drive: did not settle in time")), maxMs); });
    try { return await Promise.race([promise, limit]); } finally { clearTimeout(id); }
  }
  let done = false, failed = false, value, error;
  promise.then((v) => { done = true; value = v; }, (e) => { done = true; failed = true; error = e; });
  const start = performance.now();
  for (let i = 0; !done; i++) {
    await microtask();
    timerDriver.run();
    if (i > 20000000 || performance.now() - start > maxMs) throw new Error("drive: did not settle in time");
  }
  if (failed) throw error;
  return value;
}
export const sleep = (ms) => drive(new Promise((r) => setTimeout(r, ms)));
export const bytes = (...b) => new Uint8Array(b);
export const sameBytes = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
// Console output is only observable under the Node harness; in the guest these return null.
export function captureLog(fn) {
  const log = globalThis.__kvmjsTestLog;
  if (!Array.isArray(log)) { fn(); return null; }
  const start = log.length;
  fn();
  return log.splice(start);
}
export const logged = (fn) => { const l = captureLog(fn); return l && l.map((x) => x[1]).join("\n"); };
export async function readAll(stream) {
  const reader = stream.getReader();
  const out = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return out;
    out.push(value);
  }
}
