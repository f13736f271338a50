// Runs one WPT testharness.js test file (`*.any.js`) in the current global, shell-style:
// resources/testharness.js, then the file's `// META: script=` scripts and the file itself,
// results collected with add_completion_callback. Shared by the QuickJS guest app
// (tests/js/apps/wpt_webapi.js) and the deno reference (tests/js/wpt_webapi_deno.js), so
// both engines run exactly the same harness on the same sources.
//
// How the files are evaluated (neither engine can load a classic script from JS):
// testharness.js by one indirect eval, then the META scripts and the test file
// concatenated into a second one, so their top-level declarations (`const encodings_table`,
// `function delay`) are visible to each other as in one browser global. That eval is strict
// when the test file starts with "use strict" (the streams and encoding tests do), else
// sloppy; the helpers run in the test file's mode.
//
// The global gets what WPT's generated wrapper would give it: `GLOBAL` (not a window, a
// worker or a shadow realm) and `META_TITLE`; files that load /common/subset-tests.js (the
// `?1-1000` variants) get a `location` with an empty search, so every subtest runs once;
// any other `location` that is undefined (deno without --location) is deleted.
// `fetch` is wrapped: a relative URL of a `.json` file next to the test is answered from
// the WPT directory (WPT's server would serve it); any other relative URL would need the
// WPT server and is rejected with a TypeError naming SERVER_MARK, and subtests failing
// with it are reported as NEEDS_SERVER (not counted). Absolute URLs (data:, blob:) go to
// the engine's own fetch.

export const SERVER_MARK = "needs the WPT server";
const BASE = "http://wpt.invalid/";
const TEST_STATUS = ["PASS", "FAIL", "TIMEOUT", "NOTRUN", "PRECONDITION_FAILED"];
const HARNESS_STATUS = ["OK", "ERROR", "TIMEOUT", "PRECONDITION_FAILED"];

/** The area a file's results are counted in: top-level directory; streams/X and fetch/api/X. */
export function area(file) {
  const p = file.split("/");
  if (p[0] === "streams") return p.length > 2 ? `streams/${p[1]}` : "streams";
  if (p[0] === "fetch" && p.length > 3) return `fetch/${p[1]}/${p[2]}`;
  return p[0];
}

/** `path` (relative to the test file `file`, or absolute from the WPT root) as a WPT path. */
export function resolve(file, path) {
  const parts = path.startsWith("/") ? [] : file.split("/").slice(0, -1);
  for (const seg of path.split("/")) {
    if (seg === "" || seg === ".") continue;
    if (seg === "..") parts.pop();
    else parts.push(seg);
  }
  return parts.join("/");
}

/** The file's META settings: scripts (WPT paths, in order), title, timeout. */
export function meta(file, source) {
  const m = { scripts: [], title: null, long: false };
  for (const line of source.split("\n")) {
    const r = /^\/\/ META: *([a-z]+)=(.*)$/.exec(line.trim());
    if (!r) continue;
    const value = r[2].trim();
    if (r[1] === "script") m.scripts.push(resolve(file, value));
    else if (r[1] === "title") m.title = value;
    else if (r[1] === "timeout") m.long = value === "long";
  }
  return m;
}

/** Every file `file` needs read before it runs: testharness.js, META scripts, itself. */
export function sourcesOf(file, source) {
  return ["resources/testharness.js", ...meta(file, source).scripts, file];
}

const strictStart = /^(?:\s|\/\/[^\n]*\n|\/\*[\s\S]*?\*\/)*(['"])use strict\1/;

function text(e) {
  try {
    if (e && typeof e === "object" && "message" in e) return `${e.name ?? "Error"}: ${e.message}`;
    return String(e);
  } catch {
    return "<unprintable>";
  }
}

function wrapFetch(file, readResource) {
  const inner = globalThis.fetch;
  const fetch = async function fetch(input, init) {
    let raw;
    try {
      raw = typeof input === "object" && input !== null && "url" in input ? input.url : String(input);
    } catch {
      return inner.call(globalThis, input, init);
    }
    // Absolute URLs with their own scheme (data:, blob:, about:) go to the engine.
    if (/^[a-zA-Z][a-zA-Z0-9+.-]*:/.test(raw) && !raw.startsWith(BASE)) {
      if (typeof inner !== "function") throw new TypeError("fetch is not available");
      return inner.call(globalThis, input, init);
    }
    const url = new URL(raw, BASE + file);
    const path = decodeURIComponent(url.pathname.slice(1));
    if (url.origin === new URL(BASE).origin && !url.search && path.endsWith(".json")) {
      const body = await readResource(path);
      if (body !== null && body !== undefined)
        return new Response(body, { headers: { "content-type": "application/json" } });
    }
    throw new TypeError(`${SERVER_MARK}: ${url.href}`);
  };
  const d = Object.getOwnPropertyDescriptor(globalThis, "fetch");
  Object.defineProperty(globalThis, "fetch", { value: fetch, writable: true, configurable: true, enumerable: d ? d.enumerable : true });
}

/**
 * Runs `file` in this global. `sources` maps every path of sourcesOf() to its text;
 * `readResource(path)` gives a JSON resource's text (or null); `deadlineMs` bounds the run
 * (META timeout=long: twice that): then the harness's own timeout() ends every test still
 * running as TIMEOUT. Resolves to { file, harness: { status, message }, tests: [{ name,
 * status, message }] }.
 */
export function runFile({ file, sources, readResource, deadlineMs }) {
  const started = Date.now();
  const src = (p) => {
    const s = sources[p];
    if (typeof s !== "string") throw new Error(`source missing: ${p}`);
    return s;
  };
  const own = src(file);
  const m = meta(file, own);
  const deadline = m.long ? 2 * deadlineMs : deadlineMs;
  const results = [];
  let loadError = null;
  let finish;
  const finished = new Promise((r) => (finish = r));
  let settled = false;
  const timers = [];
  const report = (harness, tests) => {
    if (settled) return;
    settled = true;
    for (const t of timers) clearTimeout(t);
    // A load error is the cause of whatever the harness then says ("done() was called
    // without first defining any tests").
    if (loadError !== null) harness = { status: "ERROR", message: loadError };
    const seen = new Map();
    const out = [];
    for (const t of tests) {
      let name = String(t.name);
      // Keys are file | name: a repeated name gets a stable ordinal.
      const n = (seen.get(name) ?? 0) + 1;
      seen.set(name, n);
      if (n > 1) name = `${name} (#${n})`;
      let status = TEST_STATUS[t.status] ?? String(t.status);
      const message = t.message === null || t.message === undefined ? null : String(t.message);
      if (status !== "PASS" && message !== null && message.includes(SERVER_MARK)) status = "NEEDS_SERVER";
      out.push({ name, status, message });
    }
    finish({ file, harness, tests: out, ms: Date.now() - started });
  };

  try {
    globalThis.GLOBAL = { isWindow: () => false, isWorker: () => false, isShadowRealm: () => false };
    if (m.title !== null) globalThis.META_TITLE = m.title;
    // deno without --location has a `location` property holding undefined, which
    // testharness.js's get_title() (`'pathname' in location`) cannot take: a shell has none.
    if ("location" in globalThis && globalThis.location == null) delete globalThis.location;
    if (m.scripts.includes("common/subset-tests.js"))
      Object.defineProperty(globalThis, "location", { value: { search: "" }, writable: true, configurable: true });
    wrapFetch(file, readResource);
    (0, eval)(src("resources/testharness.js"));
  } catch (e) {
    report({ status: "ERROR", message: `harness setup: ${text(e)}` }, []);
    return finished;
  }
  add_result_callback((t) => results.push(t));
  add_completion_callback((tests, status) => {
    report(
      { status: HARNESS_STATUS[status.status] ?? String(status.status), message: status.message ?? null },
      tests,
    );
  });
  const parts = m.scripts.map((p) => `\n//# WPT ${p}\n${src(p)}\n`);
  parts.push(`\n//# WPT ${file}\n${own}\n`);
  const code = (strictStart.test(own) ? '"use strict";' : "") + parts.join(";");
  try {
    (0, eval)(code);
  } catch (e) {
    // An uncaught exception while the scripts load: the harness's own error handler (where
    // the global is an EventTarget) would set the status to ERROR and end the run.
    loadError = `uncaught while loading: ${text(e)}`;
    try {
      done();
    } catch {}
  }
  timers.push(
    setTimeout(() => {
      try {
        timeout();
      } catch {}
    }, deadline),
  );
  // If the harness does not complete even after timeout() (a cleanup that never settles),
  // report what finished and mark the rest.
  timers.push(
    setTimeout(() => report({ status: "TIMEOUT", message: "harness did not complete after timeout()" }, results), deadline + 1000),
  );
  return finished;
}
