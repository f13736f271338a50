// Stores request data in module state: with per-request isolation every request must
// see a fresh module (count 1, only its own id).
const seen = [];
let count = 0;
export default {
  async fetch(request) {
    count++;
    const id = new URL(request.url).searchParams.get("id");
    const secret = await request.text();
    seen.push({ id, secret });
    globalThis.lastSecret = secret;
    return Response.json({ count, seen });
  },
};
