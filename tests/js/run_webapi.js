// Guest app that runs the Web API conformance tests and reports a JSON summary:
// { passed, failed, failures: [{ name, error }] }.
import { tests } from "./webapi_tests.js";

function describe(e) {
  if (e instanceof Error) return `${e.name}: ${e.message}`;
  try { return String(e); } catch { return "<unprintable error>"; }
}

export default {
  async fetch(request) {
    const only = new URL(request.url).searchParams.get("only");
    let passed = 0;
    const failures = [];
    for (const [name, fn] of tests) {
      if (only !== null && !name.includes(only)) continue;
      try {
        await fn();
        passed++;
      } catch (e) {
        failures.push({ name, error: describe(e) });
      }
      // A failing test may leave timers behind; they must not leak into the next one. (Inside
      // the guest the driver is host-only; the host clears timers after the request.)
      globalThis.__kvmjsTimers?.clear();
    }
    return Response.json({ passed, failed: failures.length, failures });
  },
};
