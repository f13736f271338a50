// Web API conformance tests: WritableStream, TransformStream, pipes, byte streams and BYOB
// readers, TextEncoderStream/TextDecoderStream, and streams as fetch bodies.
import { assert, assertEq, assertJson, assertThrows, assertRejects, ticks, bytes, sameBytes, readAll } from "./helpers.js";

export const tests = [
  ["WritableStream writes in order, close resolves after the last write", async () => {
    const got = [];
    const ws = new WritableStream({
      async write(chunk) { await ticks(2); got.push(chunk); },
      close() { got.push("closed"); },
    });
    const w = ws.getWriter();
    assertEq(ws.locked, true);
    w.write("a");
    w.write("b");
    await w.close();
    assertJson(got, ["a", "b", "closed"]);
  }],
  ["WritableStream backpressure: desiredSize and ready", async () => {
    let release;
    const ws = new WritableStream({ write() { return new Promise((r) => { release = r; }); } }, { highWaterMark: 2 });
    const w = ws.getWriter();
    assertEq(w.desiredSize, 2);
    w.write(1); w.write(2); w.write(3);
    assertEq(w.desiredSize, -1);
    let ready = false;
    w.ready.then(() => { ready = true; });
    await ticks(5);
    assertEq(ready, false, "ready waits while the queue is over the high-water mark");
    release(); await ticks(5); release(); await ticks(5);
    assertEq(ready, true);
  }],
  ["WritableStream abort rejects pending writes and reaches the sink", async () => {
    let reason;
    const ws = new WritableStream({ write() { return new Promise(() => {}); }, abort(r) { reason = r; } });
    const w = ws.getWriter();
    const p = w.write("x");
    const err = new Error("stop");
    await w.abort(err);
    assertEq(reason, err);
    await assertRejects(p, Error);
    await assertRejects(w.closed, Error);
  }],
  ["TransformStream maps chunks and flushes", async () => {
    const ts = new TransformStream({
      transform(chunk, c) { c.enqueue(chunk.toUpperCase()); },
      flush(c) { c.enqueue("!"); },
    });
    const rs = new ReadableStream({ start(c) { c.enqueue("a"); c.enqueue("b"); c.close(); } });
    assertJson(await readAll(rs.pipeThrough(ts)), ["A", "B", "!"]);
  }],
  ["TransformStream identity by default, terminate closes the readable side", async () => {
    const ts = new TransformStream();
    const w = ts.writable.getWriter();
    w.write(1);
    const r = ts.readable.getReader();
    assertJson(await r.read(), { value: 1, done: false });
    let ctrl;
    const t2 = new TransformStream({ start(c) { ctrl = c; } });
    ctrl.terminate();
    assertJson(await t2.readable.getReader().read(), { done: true });
    await assertRejects(t2.writable.getWriter().write(1), TypeError);
  }],
  ["pipeTo propagates close, errors and abort signals", async () => {
    const got = [];
    const rs = new ReadableStream({ start(c) { c.enqueue(1); c.enqueue(2); c.close(); } });
    let closed = false;
    await rs.pipeTo(new WritableStream({ write(c) { got.push(c); }, close() { closed = true; } }));
    assertJson(got, [1, 2]);
    assert(closed, "close propagated forward");
    assert(rs.locked === false, "unlocked after the pipe");

    const boom = new Error("boom");
    const failing = new ReadableStream({ start(c) { c.error(boom); } });
    let aborted;
    const e = await assertRejects(failing.pipeTo(new WritableStream({ abort(r) { aborted = r; } })), Error);
    assertEq(e, boom);
    assertEq(aborted, boom, "error propagated forward as abort");

    const ac = new AbortController();
    let canceled;
    const endless = new ReadableStream({ pull(c) { c.enqueue(0); }, cancel(r) { canceled = r; } });
    const p = endless.pipeTo(new WritableStream(), { signal: ac.signal });
    ac.abort();
    const e2 = await assertRejects(p);
    assertEq(e2.name, "AbortError");
    assertEq(canceled.name, "AbortError");
  }],
  ["pipeThrough disturbs and locks the source at once", () => {
    const rs = new ReadableStream();
    const out = rs.pipeThrough(new TransformStream());
    assertEq(rs.locked, true);
    assert(out instanceof ReadableStream);
    assertThrows(() => rs.pipeThrough(new TransformStream()), TypeError);
  }],
  ["byte stream: BYOB reader fills the caller's view, byobRequest respond()", async () => {
    const rs = new ReadableStream({
      type: "bytes",
      pull(c) {
        const req = c.byobRequest;
        req.view[0] = 7; req.view[1] = 8;
        req.respond(2);
        c.close();
      },
    });
    const r = rs.getReader({ mode: "byob" });
    assert(r instanceof ReadableStreamBYOBReader);
    const buf = new ArrayBuffer(4);
    const { value, done } = await r.read(new Uint8Array(buf));
    assertEq(done, false);
    assert(sameBytes(value, bytes(7, 8)), "two bytes filled");
    // Node 20 (the reference harness) cannot detach a buffer; QuickJS-ng has transfer().
    if (typeof ArrayBuffer.prototype.transfer === "function") assertEq(buf.byteLength, 0, "the caller's buffer was transferred");
    assertEq((await r.read(new Uint8Array(1))).done, true);
  }],
  ["byte stream: enqueue with a default reader, read({ min })", async () => {
    const rs = new ReadableStream({
      type: "bytes",
      start(c) { c.enqueue(bytes(1, 2)); c.enqueue(bytes(3)); c.close(); },
    });
    const r = rs.getReader({ mode: "byob" });
    const { value } = await r.read(new Uint8Array(3), { min: 3 });
    assert(sameBytes(value, bytes(1, 2, 3)), "min collects all three bytes");
    assertThrows(() => new ReadableStream({ type: "bytes" }, { size: () => 1 }), RangeError);
  }],
  ["Response bodies and Blob.stream() are byte streams: BYOB reads, empty bodies close", async () => {
    const r = new Response("abc").body.getReader({ mode: "byob" });
    const { value } = await r.read(new Uint8Array(8));
    assert(sameBytes(value, bytes(0x61, 0x62, 0x63)), "bytes of the text body");
    const end = await r.read(new Uint8Array(8));
    assertEq(end.done, true);
    assertEq(end.value.byteLength, 0, "a zero-length view on close");
    const empty = new Response("").body.getReader({ mode: "byob" });
    assertEq((await empty.read(new Uint8Array(4))).done, true);
    const blobReader = new Blob([bytes(1, 2, 3)]).stream().getReader({ mode: "byob" });
    const got = await blobReader.read(new Uint8Array(2));
    assert(sameBytes(got.value, bytes(1, 2)), "a view no bigger than the caller's");
    assert(sameBytes((await blobReader.read(new Uint8Array(2))).value, bytes(3)), "the rest");
    assertEq((await blobReader.read(new Uint8Array(2))).done, true);
  }],
  ["TextEncoderStream joins surrogate pairs split across chunks", async () => {
    const ts = new TextEncoderStream();
    assertEq(ts.encoding, "utf-8");
    const w = ts.writable.getWriter();
    w.write("a\uD83D");
    w.write("\uDE00");
    w.write("\uD800");
    w.close();
    const out = await readAll(ts.readable);
    const all = [].concat(...out.map((c) => Array.from(c)));
    assertJson(all, [0x61, 0xf0, 0x9f, 0x98, 0x80, 0xef, 0xbf, 0xbd]);
  }],
  ["TextDecoderStream decodes split characters and errors when fatal", async () => {
    const ts = new TextDecoderStream();
    assertEq(ts.encoding, "utf-8");
    assertEq(ts.fatal, false);
    const w = ts.writable.getWriter();
    w.write(bytes(0xe2, 0x82));
    w.write(bytes(0xac, 0x41));
    w.close();
    assertEq((await readAll(ts.readable)).join(""), "\u20acA");

    const fatal = new TextDecoderStream("utf-8", { fatal: true });
    const fw = fatal.writable.getWriter();
    fw.write(bytes(0xff)).catch(() => {});
    await assertRejects(fatal.readable.getReader().read(), TypeError);
    assertThrows(() => new TextDecoderStream("no-such-encoding"), RangeError);
    const bad = new TextDecoderStream();
    bad.writable.getWriter().write("not bytes").catch(() => {});
    await assertRejects(bad.readable.getReader().read(), TypeError);
  }],
  ["Response body from a TransformStream (stream()/SSE style), text() reads it all", async () => {
    const { readable, writable } = new TransformStream();
    const res = new Response(readable.pipeThrough(new TextEncoderStream()));
    const w = writable.getWriter();
    (async () => { await w.write("data: 1\n\n"); await w.write("data: 2\n\n"); await w.close(); })();
    assertEq(await res.text(), "data: 1\n\ndata: 2\n\n");
  }],
  ["Response body piped through TextDecoderStream", async () => {
    const res = new Response("h\u00e9llo");
    const text = await readAll(res.body.pipeThrough(new TextDecoderStream()));
    assertEq(text.join(""), "h\u00e9llo");
    assertEq(res.bodyUsed, true);
  }],
  ["Request/Response clone() tees a stream body; structuredClone rejects streams", async () => {
    const res = new Response(new ReadableStream({ start(c) { c.enqueue(bytes(1, 2)); c.close(); } }));
    const copy = res.clone();
    const [a, b] = await Promise.all([res.arrayBuffer(), copy.arrayBuffer()]);
    assert(sameBytes(new Uint8Array(a), bytes(1, 2)) && sameBytes(new Uint8Array(b), bytes(1, 2)), "both branches");
    for (const v of [new WritableStream(), new TransformStream(), new ReadableStream()]) {
      assertEq(assertThrows(() => structuredClone(v)).name, "DataCloneError");
    }
  }],
  ["stream classes are globals with the spec's names and brand checks", () => {
    for (const name of ["ReadableStream", "ReadableStreamDefaultReader", "ReadableStreamBYOBReader", "ReadableStreamBYOBRequest",
      "ReadableStreamDefaultController", "ReadableByteStreamController", "WritableStream", "WritableStreamDefaultWriter",
      "WritableStreamDefaultController", "TransformStream", "TransformStreamDefaultController", "ByteLengthQueuingStrategy",
      "CountQueuingStrategy", "TextEncoderStream", "TextDecoderStream"]) {
      assertEq(typeof globalThis[name], "function", name);
      assertEq(Object.prototype.toString.call(globalThis[name].prototype), `[object ${name}]`, name);
      assertEq(Object.getOwnPropertyDescriptor(globalThis, name).enumerable, false, name);
    }
    assertEq(globalThis.WebStreamsPolyfill, undefined, "the library's namespace is not left behind");
    assertThrows(() => Object.getOwnPropertyDescriptor(TextDecoderStream.prototype, "readable").get.call({}), TypeError);
    assertThrows(() => new WritableStreamDefaultController(), TypeError);
  }],
];
