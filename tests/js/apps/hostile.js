// A hostile probe for per-request isolation (deno engine; the Web APIs used are guarded,
// so it also loads elsewhere). The last path segment picks the case:
// - /plant?s=SECRET&wait=MS: leaves SECRET everywhere a request could leave state
//   (module variables, globalThis, a Symbol.for global, patched Object.prototype,
//   Array.prototype and JSON.stringify, timers that write it later, a pending promise
//   chain, source compiled by eval / new Function / RegExp, a function made hot,
//   localStorage, the Cache API, a file under /tmp, the environment), waits MS ms (so
//   concurrent plants land on different VMs and the short timer fires), then answers
//   with what a probe finds: the positive control that every reader below works.
// - /probe?guess=G&hold=MS: after MS ms, everything it can find in the same places, plus
//   randomness, clocks and compile timings of source containing G (a V8 compilation
//   cache hit is fast).
// - /clock: performance.now()'s resolution.
// - /count?wait=MS: a module counter, incremented, then answered after MS ms.
// - /ok: "ok".
// The report is built without JSON.stringify or Response.json (a plant patches both).

let planted = null; // module state
const kept = []; // module state reached only through a closure
let compiledFn = null;
let timerWrites = 0;
let count = 0; // /count's module state
const TIMER_KEY = Symbol.for("kvmjs.hostile.timer");

const errorText = (e) => `${e?.name ?? "Error"}: ${String(e?.message ?? e).split("\n")[0]}`;

// A function whose optimisation state (V8's feedback and code) a plant warms up.
function hot(x) {
  let h = 0;
  for (let i = 0; i < 16; i++) h = (h * 31 + x.charCodeAt(i % x.length)) | 0;
  return h;
}

// A few KB of source around `s`: compiling it costs clearly more than a cache hit.
const sourceWith = (s) => {
  let src = `(function () { const s = ${JSON_quote(s)}; let a = 0;\n`;
  for (let i = 0; i < 300; i++) src += `a += s.length * ${i} + (a >>> ${i % 7});\n`;
  return `${src} return s; })`;
};

// JSON.stringify may be patched by a plant: the probe quotes strings itself.
function JSON_quote(s) {
  let out = '"';
  for (const ch of String(s)) {
    const c = ch.codePointAt(0);
    if (ch === '"' || ch === "\\") out += "\\" + ch;
    else if (c < 0x20) out += "\\u" + c.toString(16).padStart(4, "0");
    else out += ch;
  }
  return out + '"';
}

function toJson(v) {
  if (v === null || v === undefined) return "null";
  if (typeof v === "number") return Number.isFinite(v) ? String(v) : "null";
  if (typeof v === "boolean") return String(v);
  if (typeof v === "string") return JSON_quote(v);
  if (Array.isArray(v)) return "[" + v.map(toJson).join(",") + "]";
  return "{" + Object.keys(v).map((k) => JSON_quote(k) + ":" + toJson(v[k])).join(",") + "}";
}

const ReportResponse = Response; // a plant may not replace it: captured at load

async function plant(secret) {
  const done = {};
  planted = secret;
  kept.push(secret);
  globalThis.hostileSecret = secret;
  globalThis[Symbol.for("kvmjs.hostile")] = secret;
  Object.prototype.hostileInherited = secret;
  Array.prototype.hostileArray = secret;
  const realStringify = JSON.stringify;
  JSON.stringify = function (...a) {
    return realStringify.apply(this, a) + secret;
  };
  // Timers: one fires within the plant's wait, one later, one repeats.
  setTimeout(() => {
    globalThis.hostileTimer = secret;
    timerWrites++;
  }, 30);
  setTimeout(() => {
    globalThis.hostileLateTimer = secret;
    timerWrites++;
  }, 200);
  const interval = setInterval(() => {
    globalThis[TIMER_KEY] = secret;
    timerWrites++;
  }, 10);
  globalThis.hostileInterval = interval;
  // A promise chain that resolves only when someone calls the resolver it leaves behind.
  new Promise((resolve) => {
    globalThis.hostileResolve = resolve;
  }).then(() => {
    globalThis.hostilePromise = secret;
  });
  // V8 caches: the same sources the probe compiles when it guesses this secret.
  compiledFn = (0, eval)(sourceWith(secret));
  compiledFn();
  new Function("return " + JSON_quote(secret))();
  new RegExp(`^${secret}$`).test(secret);
  for (let i = 0; i < 200000; i++) hot(secret);
  // Storage that outlives a request in an ordinary process.
  try {
    if (typeof localStorage === "undefined") done.localStorage = "absent";
    else {
      localStorage.setItem("hostile", secret);
      done.localStorage = "set";
    }
  } catch (e) {
    done.localStorage = errorText(e);
  }
  try {
    if (typeof caches === "undefined") done.caches = "absent";
    else {
      const c = await caches.open("hostile");
      await c.put("http://cache.invalid/secret", new Response(secret));
      done.caches = "put";
    }
  } catch (e) {
    done.caches = errorText(e);
  }
  try {
    await Deno.writeTextFile("/tmp/hostile-secret", secret);
    done.file = "written";
  } catch (e) {
    done.file = errorText(e);
  }
  try {
    Deno.env.set("HOSTILE_SECRET", secret);
    done.env = "set";
  } catch (e) {
    done.env = errorText(e);
  }
  return done;
}

async function find(guess) {
  const f = {};
  f.module = planted;
  f.kept = kept.length === 0 ? null : kept.join(",");
  f.compiled = compiledFn ? compiledFn() : null;
  f.timerWrites = timerWrites;
  f.global = globalThis.hostileSecret ?? null;
  f.symbol = globalThis[Symbol.for("kvmjs.hostile")] ?? null;
  f.objectProto = {}.hostileInherited ?? null;
  f.arrayProto = [].hostileArray ?? null;
  f.stringify = JSON.stringify({});
  f.responseJson = await Response.json({}).text();
  f.timer = globalThis.hostileTimer ?? null;
  f.lateTimer = globalThis.hostileLateTimer ?? null;
  f.interval = globalThis[TIMER_KEY] ?? null;
  f.intervalId = globalThis.hostileInterval == null ? null : "set";
  if (typeof globalThis.hostileResolve === "function") globalThis.hostileResolve();
  await null;
  await null;
  f.promise = globalThis.hostilePromise ?? null;
  try {
    f.localStorage = typeof localStorage === "undefined" ? "absent" : localStorage.getItem("hostile");
  } catch (e) {
    f.localStorage = errorText(e);
  }
  try {
    if (typeof caches === "undefined") f.caches = "absent";
    else {
      const hit = await (await caches.open("hostile")).match("http://cache.invalid/secret");
      f.caches = hit ? await hit.text() : null;
    }
  } catch (e) {
    f.caches = errorText(e);
  }
  try {
    f.file = await Deno.readTextFile("/tmp/hostile-secret");
  } catch (e) {
    f.file = errorText(e);
  }
  try {
    f.env = Deno.env.get("HOSTILE_SECRET") ?? null;
  } catch (e) {
    f.env = errorText(e);
  }
  // Names a plant could have added anywhere on globalThis.
  f.globals = Object.getOwnPropertyNames(globalThis).filter((k) => k.startsWith("hostile")).join(",");
  // Randomness and clocks.
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  f.random = [Math.random(), Math.random()];
  f.bytes = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  f.uuid = crypto.randomUUID();
  // Key material from Web Crypto (generated by the runtime, not by getRandomValues).
  try {
    const key = await crypto.subtle.generateKey({ name: "HMAC", hash: "SHA-256" }, true, ["sign"]);
    const raw = new Uint8Array(await crypto.subtle.exportKey("raw", key));
    f.subtleKey = Array.from(raw.subarray(0, 16), (b) => b.toString(16).padStart(2, "0")).join("");
  } catch (e) {
    f.subtleKey = errorText(e);
  }
  f.dateNow = Date.now();
  f.perfNow = performance.now();
  f.timeOrigin = performance.timeOrigin;
  // Compile timings (µs): source containing the guess, a fresh source, the fresh source
  // again (a certain cache hit), and the first calls of the function a plant makes hot.
  if (guess !== null) {
    const time = (src) => {
      const t0 = performance.now();
      (0, eval)(src);
      return (performance.now() - t0) * 1000;
    };
    const fresh = sourceWith(crypto.randomUUID());
    f.compileGuessUs = time(sourceWith(guess));
    f.compileFreshUs = time(fresh);
    f.compileRepeatUs = time(fresh);
    const t0 = performance.now();
    for (let i = 0; i < 2000; i++) hot(guess);
    f.hotUs = (performance.now() - t0) * 1000;
  }
  return f;
}

export default {
  async fetch(request) {
    const url = new URL(request.url);
    const q = url.searchParams;
    const path = "/" + url.pathname.split("/").pop();
    switch (path) {
      case "/plant": {
        const planting = await plant(q.get("s") ?? "");
        const wait = Number(q.get("wait") ?? "0");
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        const found = await find(null);
        return new ReportResponse(toJson({ planting, found }), {
          headers: { "content-type": "application/json" },
        });
      }
      case "/probe": {
        const hold = Number(q.get("hold") ?? "0");
        if (hold > 0) await new Promise((r) => setTimeout(r, hold));
        return new ReportResponse(toJson(await find(q.get("guess"))), {
          headers: { "content-type": "application/json" },
        });
      }
      case "/count": {
        count++;
        const wait = Number(q.get("wait") ?? "0");
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        return new ReportResponse(String(count));
      }
      case "/clock": {
        // performance.now()'s resolution: the steps between distinct readings (µs).
        const steps = [];
        let prev = performance.now();
        const t0 = prev;
        let calls = 0;
        while (steps.length < 2000 && calls < 1e6) {
          calls++;
          const t = performance.now();
          if (t !== prev) {
            steps.push((t - prev) * 1000);
            prev = t;
          }
        }
        steps.sort((a, b) => a - b);
        return new ReportResponse(toJson({
          calls,
          steps: steps.length,
          minUs: steps[0],
          medianUs: steps[steps.length >> 1],
          perCallUs: ((prev - t0) * 1000) / calls,
        }));
      }
      default:
        return new ReportResponse("ok");
    }
  },
};
