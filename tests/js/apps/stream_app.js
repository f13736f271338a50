// Streamed responses (crates/kvmjs/tests/streaming.rs). Each route (the last path segment,
// so /stream/sse through Varnish is /sse) shows one behaviour:
//   /sse?n=N&gap=MS   N server-sent events, MS apart (setTimeout between them)
//   /ready            a ReadableStream whose chunks are all queued before the handler
//                     returns: it must leave whole, with a Content-Length
//   /static           a string body
//   /fail             one chunk, then the stream errors: the client must see a truncation
//   /endless          a chunk every 50 ms, forever (max_request_time ends it)
//   /bg               a short stream, then ctx.waitUntil work after it
//   /count            how many requests this VM has seen: the same after every reset
//   /sync-endless     64 KiB chunks, each pull enqueues at once, forever (no timer gap)
//   /sync-big         8 MiB in 64 KiB chunks made at once (byte i of chunk k is k % 251)
//   /early            a stream that fails before anything is sent: a 500
let seen = 0;
const enc = new TextEncoder();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export default {
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    const n = Number(url.searchParams.get("n") ?? 3);
    const gap = Number(url.searchParams.get("gap") ?? 300);
    seen++;
    switch (url.pathname.slice(url.pathname.lastIndexOf("/"))) {
      case "/sse": {
        let i = 0;
        const body = new ReadableStream({
          async pull(c) {
            if (i > 0) await sleep(gap);
            // The time the event was made, so the client can compare it with its arrival.
            c.enqueue(enc.encode(`id: ${i}\ndata: ${JSON.stringify({ i, at: Date.now() })}\n\n`));
            if (++i === n) c.close();
          },
        });
        return new Response(body, {
          headers: { "content-type": "text/event-stream", "cache-control": "no-cache" },
        });
      }
      case "/ready": {
        const body = new ReadableStream({
          start(c) {
            c.enqueue(enc.encode("one,"));
            c.enqueue(enc.encode("two,"));
            c.enqueue(enc.encode("three"));
            c.close();
          },
        });
        return new Response(body, { headers: { "content-type": "text/plain" } });
      }
      case "/static":
        return new Response("static body");
      case "/fail": {
        let i = 0;
        const body = new ReadableStream({
          async pull(c) {
            if (i++ === 0) {
              c.enqueue(enc.encode("partial "));
              return;
            }
            await sleep(100);
            c.error(new Error("the backend went away"));
          },
        });
        return new Response(body);
      }
      case "/endless": {
        let i = 0;
        const body = new ReadableStream({
          async pull(c) {
            if (i > 0) await sleep(50);
            c.enqueue(enc.encode(`tick ${i++}\n`));
          },
        });
        return new Response(body);
      }
      case "/bg": {
        ctx.waitUntil(sleep(100).then(() => console.log("background work done")));
        let i = 0;
        const body = new ReadableStream({
          async pull(c) {
            await sleep(50);
            c.enqueue(enc.encode(`part ${i} `));
            if (++i === 2) c.close();
          },
        });
        return new Response(body);
      }
      case "/sync-endless":
        return new Response(new ReadableStream({ pull(c) { c.enqueue(new Uint8Array(1 << 16).fill(120)); } }));
      case "/sync-big": {
        let k = 0;
        const body = new ReadableStream({
          pull(c) {
            c.enqueue(new Uint8Array(1 << 16).fill(k % 251));
            if (++k === 128) c.close();
          },
        });
        return new Response(body);
      }
      case "/early":
        return new Response(new ReadableStream({ start(c) { c.error(new Error("the backend refused")); } }));
      case "/count":
        return new Response(String(seen));
      default:
        return new Response("not found", { status: 404 });
    }
  },
};
