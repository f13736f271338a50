// kvmjs's adapter for `engine: "deno"`: serves one app with the deno CLI the way the
// QuickJS guest serves it, so every js/ example runs on either engine. kvmjs runs
//   deno run <flags> deno-adapter.js APP LISTEN ENV_KEYS [main_arguments...]
// APP: the app module's absolute path; LISTEN: "host:port" ("[v6]:port"), the one address
// the VM lets the program bind; ENV_KEYS: comma-separated names of the configured
// environment (tinykvm.json `environment`), which become the Workers `env` object;
// main_arguments: the program's own, the app's Deno.args.
//
// - `export default { fetch(request, env, ctx) }` (Workers): served with Deno.serve here.
// - An app that calls Deno.serve itself: its server is moved to LISTEN (whatever hostname
//   and port it asked for) and keeps its own handler, options and onError.
// Exactly one of the two, as on the QuickJS engine.
// The app sees only its own arguments in Deno.args, as under `deno run APP ARGS`.
const [appPath, listen, envKeys = "", ...appArgs] = Deno.args;
if (!appPath || !listen) {
  throw new Error("usage: deno-adapter.js APP HOST:PORT [ENV_KEYS] [ARGS...] (kvmjs builds this command line)");
}
// Like deno's own accessor: the same array on every read, assignments ignored.
Object.defineProperty(Deno, "args", {
  get: () => appArgs,
  set() {},
  enumerable: true,
  configurable: true,
});

function parseListen(text) {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:]+):(\d+)$/.exec(text);
  if (!m) throw new Error(`listen address ${JSON.stringify(text)}: expected host:port`);
  return { hostname: m[1], port: Number(m[2]) };
}
const { hostname, port } = parseListen(listen);

const env = {};
for (const key of envKeys.split(",").filter((k) => k !== "")) {
  const value = Deno.env.get(key);
  if (value !== undefined) env[key] = value;
}

// The QuickJS engine's answer to an exception, byte for byte: a one-line 500.
const errorResponse = (e) => {
  let summary;
  if (e instanceof Error) summary = `${e.name}: ${e.message}`;
  else {
    try {
      summary = `Uncaught ${String(e)}`;
    } catch {
      summary = `Uncaught ${Object.prototype.toString.call(e)}`;
    }
  }
  return new Response(`Internal Server Error: ${summary.split("\n")[0]}\n`, {
    status: 500,
    headers: { "content-type": "text/plain;charset=UTF-8" },
  });
};

// As the QuickJS engine names a handler's wrong return value.
const describe = (v) =>
  v === null
    ? "null"
    : Array.isArray(v)
      ? "an array"
      : typeof v === "object"
        ? `an object (${v.constructor?.name ?? "Object"})`
        : typeof v;

// Randomness that differs between requests. Every request starts from the same snapshot, so
// any generator whose state lives in guest memory replays the same numbers in every request:
// V8's Math.random and deno's crypto.getRandomValues/randomUUID (a userspace generator
// seeded once per thread) did exactly that. Here those three draw from a pool of bytes read
// from /dev/urandom (the host's entropy, one read system call), and each request starts with
// the pool empty, so its first draw refills it with fresh bytes; a request that uses no
// randomness pays nothing. The originals still run first for their argument checks and
// errors, so behaviour other than the bytes is deno's own.
const urandom = Deno.openSync("/dev/urandom");
const pool = new Uint8Array(4096);
const pool32 = new Uint32Array(pool.buffer);
let drawn = pool.length;
const freshRequest = () => {
  drawn = pool.length;
};
function refill() {
  for (let at = 0; at < pool.length;) {
    const n = urandom.readSync(pool.subarray(at));
    if (!n) throw new Error("/dev/urandom returned no bytes");
    at += n;
  }
  drawn = 0;
  // The bytes last until the current task's microtasks are done: a later task (the next
  // request, or a timer that was pending in the snapshot and fires at the start of every
  // request) draws fresh ones, so no pool ever survives into a snapshot.
  queueMicrotask(freshRequest);
}
// Fills `bytes` from the pool; `drawn` stays a multiple of 4 for Math.random's words.
function fill(bytes) {
  for (let at = 0; at < bytes.length;) {
    if (drawn >= pool.length) refill();
    const n = Math.min(bytes.length - at, pool.length - drawn);
    bytes.set(pool.subarray(drawn, drawn + n), at);
    at += n;
    drawn = Math.min(pool.length, (drawn + n + 3) & ~3);
  }
}
Object.defineProperty(Math, "random", {
  value: function random() {
    if (drawn + 8 > pool.length) refill();
    const i = drawn >> 2;
    drawn += 8;
    // 53 random bits, as V8's own: [0, 1).
    return ((pool32[i] >>> 5) * 67108864 + (pool32[i + 1] >>> 6)) / 9007199254740992;
  },
  writable: true,
  configurable: true,
  enumerable: false,
});
const CryptoProto = Object.getPrototypeOf(crypto);
const realGetRandomValues = CryptoProto.getRandomValues;
const realRandomUUID = CryptoProto.randomUUID;
Object.defineProperty(CryptoProto, "getRandomValues", {
  value: function getRandomValues(array) {
    const out = realGetRandomValues.call(this, array);
    fill(new Uint8Array(array.buffer, array.byteOffset, array.byteLength));
    return out;
  },
  writable: true,
  configurable: true,
  enumerable: true,
});
const hex = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));
Object.defineProperty(CryptoProto, "randomUUID", {
  value: function randomUUID() {
    realRandomUUID.call(this);
    const b = new Uint8Array(16);
    fill(b);
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // variant 10
    const h = Array.from(b, (x) => hex[x]);
    return `${h[0]}${h[1]}${h[2]}${h[3]}-${h[4]}${h[5]}-${h[6]}${h[7]}-${h[8]}${h[9]}-${h.slice(10).join("")}`;
  },
  writable: true,
  configurable: true,
  enumerable: true,
});

// Whatever the app asks for, its server listens on LISTEN, quietly (no "Listening on" line
// unless the app passes its own onListen).
const realServe = Deno.serve.bind(Deno);
let appServers = 0;
function serve(a, b) {
  let options;
  let handler;
  if (typeof a === "function") {
    handler = a;
    options = b ?? {};
  } else {
    options = a ?? {};
    handler = typeof b === "function" ? b : options.handler;
  }
  appServers += 1;
  const moved = { onListen() {}, ...options, hostname, port };
  delete moved.path; // a Unix socket would bypass LISTEN
  if (typeof handler !== "function") return realServe(moved); // deno's own error
  delete moved.handler;
  return realServe(moved, function (request, info) {
    freshRequest();
    return handler.call(this, request, info);
  });
}
Object.defineProperty(Deno, "serve", { value: serve, writable: true, configurable: true });

// The response field by which a program tells kvmjs it has work left after the response
// (crates/vm/src/net/http.rs BACKGROUND_FIELD), and the keep-alive tick while it runs
// (shorter than kvmjs's 1 s "busy timer", crates/vm/src/listen.rs BUSY_TIMER).
const BACKGROUND = "kvmjs-background";
// The originals, before the app can patch them.
const NativePromise = Promise;
const promiseThen = Promise.prototype.then;
const KEEPALIVE_MS = 50;

const mod = await import(new URL(`file://${appPath}`).href);
const fetchHandler = mod.default?.fetch;
if (typeof fetchHandler === "function") {
  if (appServers > 0) {
    throw new Error("the app both exports default { fetch } and calls Deno.serve: keep one");
  }
  realServe({ hostname, port, onListen() {} }, async (request) => {
    freshRequest();
    // ctx.waitUntil as on Workers: the response goes out first, the work runs after it.
    // The response then carries BACKGROUND (taken out by kvmjs, never seen by the client),
    // so kvmjs answers the client and then lets the VM run on until the work is done
    // (within max_background_time) before it resets it. kvmjs counts a VM whose next
    // timer is over 1 s away (or that has none) as done, so while a promise is pending a
    // KEEPALIVE_MS interval ticks: work waiting on a long timer, or on nothing, runs until
    // it settles or is cut at max_background_time, as on the QuickJS engine. (A cleared
    // interval's wake-up still comes, so the VM runs on up to KEEPALIVE_MS after the last
    // promise settles.) A request that calls no waitUntil pays none of this.
    let pending = 0;
    let used = false;
    let tick;
    const settled = () => {
      if (--pending === 0) clearInterval(tick);
    };
    const rejected = (e) => {
      console.error("waitUntil promise rejected:", e);
      settled();
    };
    const ctx = {
      waitUntil(p) {
        used = true;
        if (pending++ === 0) tick = setInterval(() => {}, KEEPALIVE_MS);
        // A promise of our own, followed with the original `then`: whatever `p` is (a
        // thenable whose `then` throws, a patched Promise.prototype), it settles through
        // `settled` exactly once and never throws here.
        promiseThen.call(new NativePromise((resolve) => resolve(p)), settled, rejected);
      },
      passThroughOnException() {},
      props: {},
    };
    let response;
    try {
      response = await fetchHandler.call(mod.default, request, env, ctx);
      if (!(response instanceof Response)) {
        throw new TypeError(`the handler returned ${describe(response)} instead of a Response`);
      }
    } catch (e) {
      console.error("Uncaught exception in handler:", e);
      response = errorResponse(e);
    }
    // Not on a 101: an upgrade is no response to finish after (kvmjs refuses it anyway),
    // and a 101 Response cannot be copied.
    if (used && response.status !== 101) {
      try {
        response.headers.set(BACKGROUND, "1");
      } catch {
        // Immutable headers (Response.redirect, a fetch() response): a copy takes the field.
        try {
          const copy = new Response(response.body, response);
          copy.headers.set(BACKGROUND, "1");
          response = copy;
        } catch (e) {
          console.error("waitUntil: the response cannot carry the background field:", e);
        }
      }
    }
    return response;
  });
} else if (appServers === 0) {
  throw new Error(`${appPath}: the app neither exports default { fetch } nor calls Deno.serve`);
}
