// Native deno serving a kvmjs app module (Workers style) with Deno.serve: the comparator
// without isolation. Usage: deno run --allow-read --allow-net peers/deno.js APP.js PORT
const mod = await import(Deno.args[0]);
const port = Number(Deno.args[1]);
const ctx = { waitUntil() {}, passThroughOnException() {} };
Deno.serve({ hostname: "127.0.0.1", port, onListen() {} }, (req) => mod.default.fetch(req, {}, ctx));
