// Smoke test for the built bundle (run ./build.sh first): `node check.mjs`.
// Needs Node 18+ (global Response). Exits non-zero on failure.
import { readFileSync } from "node:fs";

const url = new URL("../renderer.js", import.meta.url);
const source = readFileSync(url, "utf8");

// QuickJS has none of these; the bundle must not need them. (React's error
// reporting fallback mentions `typeof process=="object"`, which is harmless,
// so `process.env` is what is checked: the define must have replaced it.)
for (const name of ["MessageChannel", "setImmediate", "require(", "process.env"]) {
  if (source.includes(name)) throw new Error(`renderer.js references ${name}`);
}
if (/(^|[;}\s])import[\s{*"]|\bfrom"/.test(source)) throw new Error("renderer.js has imports left");

const { default: handler } = await import(url.href);
const response = await handler.fetch(new Request("http://localhost/x"));
const body = new Uint8Array(await response.arrayBuffer());
const html = new TextDecoder().decode(body);
const rows = html.match(/<tr class="(odd|even)">/g)?.length ?? 0;

if (response.status !== 200) throw new Error(`status ${response.status}`);
if (!html.startsWith("<!DOCTYPE html><html")) throw new Error("missing doctype");
if (rows !== 150) throw new Error(`expected 150 rows, got ${rows}`);
if (html.includes('Widget "')) throw new Error("unescaped quote in output");

console.log(`bundle ${source.length} bytes; status ${response.status}; ` +
  `${response.headers.get("content-type")}; body ${body.length} bytes; ${rows} rows`);
