// Native node (http module) serving a kvmjs app module (Workers style), converting between
// node's request/response and Fetch's Request/Response. Usage: node peers/node.mjs APP.js PORT
import http from "node:http";
import { pathToFileURL } from "node:url";

const mod = await import(pathToFileURL(process.argv[2]).href);
const port = Number(process.argv[3]);
const ctx = { waitUntil() {}, passThroughOnException() {} };

http
  .createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const body = chunks.length && req.method !== "GET" && req.method !== "HEAD" ? Buffer.concat(chunks) : undefined;
    const request = new Request(`http://${req.headers.host ?? "localhost"}${req.url}`, {
      method: req.method,
      headers: req.headers,
      body,
    });
    const response = await mod.default.fetch(request, {}, ctx);
    const out = Buffer.from(await response.arrayBuffer());
    const headers = Object.fromEntries(response.headers);
    headers["content-length"] = out.length;
    res.writeHead(response.status, headers);
    res.end(out);
  })
  .listen(port, "127.0.0.1");
