// fetch() to backends (crates/kvmjs/tests/fetch_backend.rs). The backend URL comes in the
// query (?u=...); each route (the last path segment) shows one behaviour and answers JSON:
//   /get       fetch(u) (query m=METHOD, body=TEXT, redirect=MODE): status, url,
//              redirected, headers and body text
//   /chunks    fetch(u) and read the body chunk by chunk: each chunk's text and when it
//              arrived (ms since the fetch started)
//   /upload    POST a ReadableStream body of n chunks, gap ms apart, to u: the origin's answer
//   /upload-fail  POST a ReadableStream body that sends one chunk, then errors: the error
//   /upload-big   POST a ReadableStream body of n MiB (query n) to u: the answer or error
//   /abort     read one chunk of a slow body, abort, read again: the error's name
//   /open      start fetch(u) and answer without reading its body (the handle stays open
//              until the reset)
//   /proxy     answer with fetch(u)'s Response itself (its body streams through)
// Failures answer {error: name, message}.
const enc = new TextEncoder();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function route(request) {
  const url = new URL(request.url);
  const q = url.searchParams;
  const u = q.get("u");
  switch (url.pathname.slice(url.pathname.lastIndexOf("/"))) {
    case "/get": {
      const init = { method: q.get("m") ?? "GET", redirect: q.get("redirect") ?? "follow" };
      if (q.has("body")) init.body = q.get("body");
      if (q.has("auth")) init.headers = { authorization: q.get("auth") };
      const r = await fetch(u, init);
      const body = await r.text();
      return {
        status: r.status, url: r.url, redirected: r.redirected, type: r.type,
        echo: r.headers.get("x-echo"), body,
      };
    }
    case "/chunks": {
      const t0 = Date.now();
      const r = await fetch(u);
      const reader = r.body.getReader();
      const dec = new TextDecoder();
      const chunks = [];
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        chunks.push([Date.now() - t0, dec.decode(value)]);
      }
      return { status: r.status, chunks };
    }
    case "/upload": {
      const n = Number(q.get("n") ?? 3);
      const gap = Number(q.get("gap") ?? 100);
      let i = 0;
      const body = new ReadableStream({
        async pull(c) {
          if (i > 0) await sleep(gap);
          c.enqueue(enc.encode(`part${i};`));
          if (++i === n) c.close();
        },
      });
      const r = await fetch(u, { method: "POST", body, duplex: "half" });
      return { status: r.status, body: await r.text() };
    }
    case "/upload-fail": {
      let i = 0;
      const body = new ReadableStream({
        async pull(c) {
          if (i++ === 0) {
            c.enqueue(enc.encode("part0;"));
          } else {
            await sleep(100);
            c.error(new RangeError("the upload broke"));
          }
        },
      });
      const r = await fetch(u, { method: "POST", body, duplex: "half" });
      return { status: r.status, body: await r.text() };
    }
    case "/upload-big": {
      const n = Number(q.get("n") ?? 8);
      const mib = new Uint8Array(1 << 20).fill(120);
      let i = 0;
      const body = new ReadableStream({
        pull(c) {
          c.enqueue(mib);
          if (++i === n) c.close();
        },
      });
      const r = await fetch(u, { method: "POST", body, duplex: "half" });
      return { status: r.status, body: await r.text() };
    }
    case "/abort": {
      const ac = new AbortController();
      const r = await fetch(u, { signal: ac.signal });
      const reader = r.body.getReader();
      const first = await reader.read();
      ac.abort();
      try {
        await reader.read();
        return { aborted: false, first: first.value.byteLength };
      } catch (e) {
        return { aborted: true, name: e.name, first: first.value.byteLength };
      }
    }
    case "/open": {
      const r = await fetch(u);
      return { status: r.status };
    }
    case "/proxy":
      return fetch(u);
    default:
      return { error: "NoRoute", message: url.pathname };
  }
}

export default {
  async fetch(request) {
    let out;
    try {
      out = await route(request);
      if (out instanceof Response) return out;
    } catch (e) {
      out = { error: e?.name ?? String(e), message: e?.message ?? "" };
    }
    return Response.json(out);
  },
};
