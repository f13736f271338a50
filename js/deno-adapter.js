// kvmjs's adapter for `engine: "deno"`: serves one app with the deno CLI the way the
// QuickJS guest serves it, so every js/ example runs on either engine. kvmjs runs
//   deno run <flags> deno-adapter.js APP LISTEN ENV_KEYS [main_arguments...]
// APP: the app module's absolute path; LISTEN: "host:port" ("[v6]:port"), the one address
// the VM lets the program bind; ENV_KEYS: comma-separated names of the configured
// environment (tinykvm.json `environment`), which become the Workers `env` object.
//
// - `export default { fetch(request, env, ctx) }` (Workers): served with Deno.serve here.
// - An app that calls Deno.serve itself: its server is moved to LISTEN (whatever hostname
//   and port it asked for) and keeps its own handler, options and onError.
// Exactly one of the two, as on the QuickJS engine.
const [appPath, listen, envKeys = ""] = Deno.args;
if (!appPath || !listen) {
  throw new Error("usage: deno-adapter.js APP HOST:PORT [ENV_KEYS] (kvmjs builds this command line)");
}

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
  return handler === undefined ? realServe(moved) : realServe(moved, handler);
}
Object.defineProperty(Deno, "serve", { value: serve, writable: true, configurable: true });

const mod = await import(new URL(`file://${appPath}`).href);
const fetchHandler = mod.default?.fetch;
if (typeof fetchHandler === "function") {
  if (appServers > 0) {
    throw new Error("the app both exports default { fetch } and calls Deno.serve: keep one");
  }
  realServe({ hostname, port, onListen() {} }, async (request) => {
    // The VM's response is complete when the app answers and is then reset, so the
    // ctx.waitUntil work finishes first (as the QuickJS guest does outside a VM).
    const waits = [];
    const ctx = {
      waitUntil(p) {
        waits.push(Promise.resolve(p).catch((e) => console.error("waitUntil promise rejected:", e)));
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
    await Promise.all(waits);
    return response;
  });
} else if (appServers === 0) {
  throw new Error(`${appPath}: the app neither exports default { fetch } nor calls Deno.serve`);
}
