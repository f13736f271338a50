// Stores every request's secret in module state, a global and a Map, and reports what it
// finds there: with per-request isolation each request sees only itself.
const seen = [];
const byId = new Map();
let count = 0;
export default {
  async fetch(request) {
    count++;
    const id = new URL(request.url).searchParams.get("id");
    const secret = await request.text();
    const previous = globalThis.lastSecret ?? null;
    seen.push({ id, secret });
    byId.set(id, secret);
    globalThis.lastSecret = secret;
    return Response.json({ count, previous, stored: byId.size, seen });
  },
};
