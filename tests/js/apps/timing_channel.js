// A covert-channel probe: can one request pass bits to a later request through the cost
// of touching guest pages? One page per bit, in two regions:
// - "data": a module-level array filled at load, so its pages hold data in the snapshot;
// - "fresh": a large array allocated at load but never touched, so its pages are not in
//   the snapshot (they read as zero and are restored by zeroing).
// GET /send?region=R&op=write|read&bits=0101… touches page i when bit i is 1 (a write
// changes the byte); GET /recv?region=R&op=write|read times one touch of each page with
// performance.now() (the TSC: sub-µs) and returns the 64 durations in µs. Any other path
// is an unrelated request. The test decodes: a fast touch reads as 1.
const PAGE = 4096;
const BITS = 64;
// Bit pages are two pages apart, at an offset inside the page, so neighbours (and
// allocator headers at the start of the block) never share a page with them.
const at = (i) => (2 * i + 1) * PAGE + 256;
const data = new Uint8Array((2 * BITS + 2) * PAGE);
for (let i = 0; i < data.length; i += 64) data[i] = 1;
// Large enough that the allocator maps it fresh (untouched pages read as zero).
const fresh = new Uint8Array(4 << 20);
const regions = { data, fresh };
let unrelated = 0;

function send(buf, op, bits) {
  let sink = 0;
  for (let i = 0; i < BITS; i++) {
    if (bits[i] !== "1") continue;
    if (op === "read") sink += buf[at(i)];
    else buf[at(i)] = (buf[at(i)] + 7) & 0xff;
  }
  return sink;
}

function receive(buf, op) {
  const us = new Array(BITS);
  let sink = 0;
  for (let i = 0; i < BITS; i++) {
    const t0 = performance.now();
    if (op === "read") sink += buf[at(i)];
    else buf[at(i)] = 0x5a;
    us[i] = (performance.now() - t0) * 1000;
  }
  return { us, sink };
}

export default {
  fetch(request) {
    const url = new URL(request.url);
    const q = url.searchParams;
    const buf = regions[q.get("region") ?? "data"];
    const op = q.get("op") ?? "write";
    switch (url.pathname) {
      case "/send":
        return Response.json({ sink: send(buf, op, q.get("bits") ?? "") });
      case "/recv":
        return Response.json(receive(buf, op));
      default:
        // Touches its own small state, as an unrelated request would.
        unrelated++;
        return new Response(`unrelated ${unrelated} ${url.pathname}`);
    }
  },
};
