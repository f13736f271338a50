// Runs src/web/*.js and tests/js/webapi_tests.js under Node 20 with a __native shim, so the
// Web API layer can be checked without building the guest.
//   node tests/js/node_harness.mjs [name-filter]
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import vm from "node:vm";
import { fileURLToPath, pathToFileURL } from "node:url";
import { randomFillSync } from "node:crypto";
import { performance as nodePerformance } from "node:perf_hooks";
import { setImmediate } from "node:timers";
import { subtleShim } from "./node_subtle_shim.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..", "..");
const webDir = path.join(root, "src", "web");

// Node's implementations, captured before the globals are removed.
const NodeURL = globalThis.URL;
const NodeTextEncoder = globalThis.TextEncoder;
const NodeTextDecoder = globalThis.TextDecoder;
const out = (s) => process.stdout.write(s + "\n");
const err = (s) => process.stderr.write(s + "\n");

const record = (u) => [u.href, u.origin, u.protocol, u.username, u.password, u.host, u.hostname, u.port, u.pathname, u.search, u.hash];
const encoder = new NodeTextEncoder();
const logLines = [];

const native = {
  urlParse(input, base) {
    try { return record(base === undefined ? new NodeURL(input) : new NodeURL(input, base)); } catch { return null; }
  },
  urlSet(href, setter, value) {
    const u = new NodeURL(href);
    if (setter === "href") {
      try { u.href = value; } catch { return null; }
    } else {
      u[setter] = value;
    }
    return record(u);
  },
  utf8Encode(s) { return encoder.encode(s); },
  utf8Decode(bytes, fatal, ignoreBOM) { return new NodeTextDecoder("utf-8", { fatal, ignoreBOM }).decode(bytes); },
  textDecoder(label, fatal, ignoreBOM) {
    let d;
    try { d = new NodeTextDecoder(label, { fatal, ignoreBOM }); } catch { return null; }
    return [d.encoding, (bytes, stream) => d.decode(bytes, { stream })];
  },
  randomFill(view) { randomFillSync(view); },
  subtle: subtleShim,
  // src/engine/lazy.rs: each src/web/lazy/<group>/*.js is a function of (native, internal).
  loadLazy(group, nat, internal) {
    const dir = path.join(webDir, "lazy", group);
    if (!fs.existsSync(dir)) return false;
    for (const file of fs.readdirSync(dir).filter((f) => f.endsWith(".js")).sort()) {
      const filename = path.join(dir, file);
      vm.runInThisContext(fs.readFileSync(filename, "utf8"), { filename })(nat, internal);
    }
    return true;
  },
  now() { return nodePerformance.now(); },
  wallNow() { return Date.now(); },
  log(level, msg) {
    logLines.push([level, msg]);
    if (process.env.KVMJS_SHOW_LOG) (level >= 2 ? err : out)(`[log ${level}] ${msg}`);
  },
};

const REMOVE = [
  "URL", "URLSearchParams", "Headers", "Request", "Response", "Blob", "File", "ReadableStream",
  "ReadableStreamDefaultReader", "ReadableStreamDefaultController", "TextEncoder", "TextDecoder",
  "AbortController", "AbortSignal", "Event", "EventTarget", "CustomEvent", "DOMException",
  "structuredClone", "atob", "btoa", "setTimeout", "setInterval", "clearTimeout", "clearInterval",
  "queueMicrotask", "crypto", "Crypto", "CryptoKey", "SubtleCrypto", "performance", "Performance", "navigator", "Navigator", "fetch", "FormData",
];
for (const name of REMOVE) {
  delete globalThis[name];
  if (name in globalThis) Object.defineProperty(globalThis, name, { value: undefined, writable: true, configurable: true });
}

globalThis.__native = native;
for (const file of fs.readdirSync(webDir).filter((f) => f.endsWith(".js")).sort()) {
  const filename = path.join(webDir, file);
  vm.runInThisContext(fs.readFileSync(filename, "utf8"), { filename });
}
delete globalThis.__native;

for (const name of ["__native", "__kvmjsInternal"]) {
  if (name in globalThis) { err(`FAIL: ${name} is still visible after loading`); process.exit(1); }
}
for (const name of REMOVE.filter((n) => !["fetch", "FormData"].includes(n))) {
  if (globalThis[name] === undefined) { err(`FAIL: global ${name} was not defined`); process.exit(1); }
}
globalThis.__kvmjsTestLog = logLines;

// The test modules are plain .js ES modules; copy them next to a package.json that says so,
// which also lets run_webapi.js import webapi_tests.js by relative path as in the guest.
function stage() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "kvmjs-webapi-"));
  fs.writeFileSync(path.join(dir, "package.json"), '{ "type": "module" }\n');
  for (const f of ["webapi_tests.js", "run_webapi.js"]) fs.copyFileSync(path.join(here, f), path.join(dir, f));
  fs.cpSync(path.join(here, "webapi"), path.join(dir, "webapi"), { recursive: true });
  return dir;
}
const staged = [];
const filter = process.argv[2];
let exitCode = 0;
try {
  // Phase 1: the tests with the timer driver visible; they drive time themselves.
  staged.push(stage());
  const { tests } = await import(pathToFileURL(path.join(staged[0], "webapi_tests.js")).href);
  let passed = 0;
  const failures = [];
  for (const [name, fn] of tests) {
    if (filter && !name.includes(filter)) continue;
    try {
      await fn();
      passed++;
    } catch (e) {
      failures.push([name, e]);
    }
    __kvmjsTimers.clear();
  }
  for (const [name, e] of failures) {
    out(`FAIL ${name}: ${e && e.stack ? e.stack : String(e)}`);
  }
  out(`${passed} passed, ${failures.length} failed`);
  if (failures.length > 0) exitCode = 1;

  // Phase 2: run_webapi.js the way the guest runs it. The host takes the internal hooks off
  // the global object and runs due timers whenever the job queue is empty; Node's own
  // event loop (setImmediate runs after microtasks drain) plays the host here.
  if (!filter) {
    const timers = globalThis.__kvmjsTimers;
    const body = globalThis.__kvmjsBody;
    delete globalThis.__kvmjsTimers;
    delete globalThis.__kvmjsBody;
    let pumping = true;
    const pump = () => { timers.run(); if (pumping) setImmediate(pump); };
    setImmediate(pump);
    try {
      staged.push(stage());
      const app = (await import(pathToFileURL(path.join(staged[1], "run_webapi.js")).href)).default;
      const res = await app.fetch(new Request("http://localhost/run"));
      const text = await body.bytes(res);
      const summary = JSON.parse(typeof text === "string" ? text : new NodeTextDecoder().decode(text));
      for (const f of summary.failures) out(`FAIL (guest mode) ${f.name}: ${f.error}`);
      out(`run_webapi.js (guest mode): ${summary.passed} passed, ${summary.failed} failed`);
      if (res.status !== 200 || summary.failed !== 0 || summary.passed < passed) exitCode = 1;
    } finally {
      pumping = false;
    }
  }
} finally {
  for (const dir of staged) fs.rmSync(dir, { recursive: true, force: true });
}
process.exit(exitCode);
