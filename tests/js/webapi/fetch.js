// Web API conformance tests: streams, Headers, Request, Response.
import {
  hostBody, assert, assertEq, assertJson, assertThrows, assertRejects, microtask, ticks, bytes,
  sameBytes, readAll,
} from "./helpers.js";

export const tests = [
  // ---------------- streams ----------------
  ["ReadableStream enqueue in start then close", async () => {
    const rs = new ReadableStream({ start(c) { c.enqueue("a"); c.enqueue("b"); c.close(); } });
    const r = rs.getReader();
    assertJson(await r.read(), { value: "a", done: false });
    assertJson(await r.read(), { value: "b", done: false });
    assertJson(await r.read(), { done: true });
    assertEq((await r.read()).done, true);
    await r.closed;
  }],
  ["ReadableStream pull-based source", async () => {
    let n = 0;
    const rs = new ReadableStream({ pull(c) { n++; if (n > 3) c.close(); else c.enqueue(n); } });
    assertJson(await readAll(rs), [1, 2, 3]);
  }],
  ["ReadableStream async pull and desiredSize", async () => {
    let ctrl;
    const rs = new ReadableStream({
      start(c) { ctrl = c; },
      async pull(c) { await microtask(); c.enqueue("x"); },
    }, { highWaterMark: 2 });
    assertEq(ctrl.desiredSize, 2);
    await ticks(20);
    assertEq(ctrl.desiredSize, 0, "filled up to the high-water mark");
    const r = rs.getReader();
    assertEq((await r.read()).value, "x");
    assertEq(ctrl.desiredSize, 1, "one chunk left in the queue");
    await ticks(20);
    assertEq(ctrl.desiredSize, 0, "refilled");
  }],
  ["ReadableStream strategy size", async () => {
    let ctrl;
    new ReadableStream({ start(c) { ctrl = c; } }, { highWaterMark: 10, size: (chunk) => chunk.length });
    ctrl.enqueue("abcd");
    assertEq(ctrl.desiredSize, 6);
    assertThrows(() => new ReadableStream({}, { highWaterMark: -1 }), RangeError);
  }],
  ["queuing strategies", async () => {
    const b = new ByteLengthQueuingStrategy({ highWaterMark: 8 });
    assertEq(b.highWaterMark, 8); assertEq(b.size(bytes(1, 2, 3)), 3); assertEq(b.size, new ByteLengthQueuingStrategy({ highWaterMark: 1 }).size);
    assertEq(new CountQueuingStrategy({ highWaterMark: 2 }).size("anything"), 1);
    assertThrows(() => new CountQueuingStrategy({}), TypeError);
    let ctrl;
    new ReadableStream({ start(c) { ctrl = c; } }, b);
    ctrl.enqueue(bytes(1, 2, 3));
    assertEq(ctrl.desiredSize, 5);
  }],
  ["ReadableStream errors propagate to read and closed", async () => {
    const boom = new Error("start failed");
    const r1 = new ReadableStream({ start() { return Promise.reject(boom); } }).getReader();
    assertEq(await assertRejects(r1.read()), boom);
    assertEq(await assertRejects(r1.closed), boom);
    let ctrl;
    const r2 = new ReadableStream({ start(c) { ctrl = c; } }).getReader();
    const pending = r2.read();
    ctrl.error(new TypeError("bad"));
    await assertRejects(pending, TypeError);
    assertEq(ctrl.desiredSize, null);
    const r3 = new ReadableStream({ pull() { throw new RangeError("pull failed"); } }).getReader();
    await assertRejects(r3.read(), RangeError);
  }],
  ["ReadableStream start throwing synchronously throws from constructor", () => {
    assertThrows(() => new ReadableStream({ start() { throw new SyntaxError("sync"); } }), SyntaxError);
    assertThrows(() => new ReadableStream({ pull: 5 }), TypeError);
    assertThrows(() => new ReadableStream({ type: "nope" }), TypeError);
  }],
  ["ReadableStream cancel", async () => {
    let reason = null;
    const rs = new ReadableStream({ start(c) { c.enqueue(1); }, cancel(r) { reason = r; } });
    await rs.cancel("stop");
    assertEq(reason, "stop");
    const r = rs.getReader();
    assertEq((await r.read()).done, true, "cancel empties the queue and closes");
    await assertRejects(rs.cancel(), TypeError);
  }],
  ["getReader locks; releaseLock unlocks", async () => {
    const rs = new ReadableStream({ start(c) { c.enqueue(1); c.close(); } });
    const r = rs.getReader();
    assertEq(rs.locked, true);
    assertThrows(() => rs.getReader(), TypeError);
    assertThrows(() => new ReadableStreamDefaultReader(rs), TypeError);
    r.releaseLock();
    assertEq(rs.locked, false);
    await assertRejects(r.read(), TypeError);
    await assertRejects(r.closed, TypeError);
    assertEq((await rs.getReader().read()).value, 1);
    assertThrows(() => rs.getReader({ mode: "byob" }), TypeError);
  }],
  ["releaseLock rejects pending reads", async () => {
    const rs = new ReadableStream();
    const r = rs.getReader();
    const p = r.read();
    r.releaseLock();
    await assertRejects(p, TypeError);
  }],
  ["enqueue/close after close throws TypeError", () => {
    let ctrl;
    new ReadableStream({ start(c) { ctrl = c; } });
    ctrl.close();
    assertThrows(() => ctrl.enqueue(1), TypeError);
    assertThrows(() => ctrl.close(), TypeError);
    assertThrows(() => new ReadableStreamDefaultController(), TypeError);
  }],
  ["ReadableStream async iteration", async () => {
    const rs = new ReadableStream({ start(c) { for (const x of [1, 2, 3]) c.enqueue(x); c.close(); } });
    const out = [];
    for await (const x of rs) out.push(x);
    assertJson(out, [1, 2, 3]);
    assertEq(rs.locked, false);
  }],
  ["breaking out of for-await cancels the stream", async () => {
    let cancelled = false;
    let i = 0;
    const rs = new ReadableStream({ pull(c) { c.enqueue(i++); }, cancel() { cancelled = true; } });
    for await (const x of rs) if (x === 2) break;
    assertEq(cancelled, true);
    assertEq(rs.locked, false);
  }],
  ["values({ preventCancel: true })", async () => {
    let cancelled = false;
    const rs = new ReadableStream({ start(c) { c.enqueue("a"); c.enqueue("b"); }, cancel() { cancelled = true; } });
    for await (const x of rs.values({ preventCancel: true })) { assertEq(x, "a"); break; }
    assertEq(cancelled, false);
    assertEq((await rs.getReader().read()).value, "b");
  }],
  ["ReadableStream.from iterables and async iterables", async () => {
    assertJson(await readAll(ReadableStream.from([1, 2, 3])), [1, 2, 3]);
    async function* gen() { yield "x"; await microtask(); yield "y"; }
    assertJson(await readAll(ReadableStream.from(gen())), ["x", "y"]);
    assertJson(await readAll(ReadableStream.from([Promise.resolve(7)])), [7]);
    const src = new ReadableStream({ start(c) { c.enqueue("s"); c.close(); } });
    assertJson(await readAll(ReadableStream.from(src)), ["s"]);
    assertThrows(() => ReadableStream.from(5), TypeError);
  }],
  ["ReadableStream.from cancel calls iterator.return", async () => {
    let returned = false;
    function* gen() { try { yield 1; yield 2; } finally { returned = true; } }
    const rs = ReadableStream.from(gen());
    const r = rs.getReader();
    assertEq((await r.read()).value, 1);
    await r.cancel();
    assertEq(returned, true);
  }],
  ["ReadableStream.tee", async () => {
    const rs = new ReadableStream({ start(c) { c.enqueue("a"); c.enqueue("b"); c.close(); } });
    const [x, y] = rs.tee();
    assertEq(rs.locked, true);
    const [ax, ay] = await Promise.all([readAll(x), readAll(y)]);
    assertJson(ax, ["a", "b"]); assertJson(ay, ["a", "b"]);
  }],
  ["tee cancels the source only when both branches cancel", async () => {
    let reason = null;
    const rs = new ReadableStream({ cancel(r) { reason = r; } });
    const [x, y] = rs.tee();
    const p = x.cancel("one");
    await ticks(5);
    assertEq(reason, null);
    await y.cancel("two");
    await p;
    assertJson(reason, ["one", "two"]);
  }],
  ["byte-type streams accept views only", async () => {
    let ctrl;
    const rs = new ReadableStream({ type: "bytes", start(c) { ctrl = c; } });
    assertThrows(() => ctrl.enqueue("str"), TypeError);
    ctrl.enqueue(bytes(1, 2));
    ctrl.close();
    const chunks = await readAll(rs);
    assert(sameBytes(chunks[0], bytes(1, 2)), "bytes");
  }],

  // ---------------- Headers ----------------
  ["Headers are case-insensitive", () => {
    const h = new Headers({ "Content-Type": "text/html" });
    assertEq(h.get("content-type"), "text/html"); assertEq(h.get("CONTENT-TYPE"), "text/html");
    assertEq(h.has("Content-type"), true); assertEq(h.get("missing"), null);
  }],
  ["Headers append combines values", () => {
    const h = new Headers();
    h.append("Accept", "a"); h.append("accept", "b");
    assertEq(h.get("ACCEPT"), "a, b");
    h.set("accept", "c");
    assertEq(h.get("accept"), "c");
    h.delete("Accept");
    assertEq(h.has("accept"), false);
  }],
  ["Headers iterate sorted with lowercase names", () => {
    const h = new Headers([["X-B", "2"], ["x-a", "1"], ["X-A", "3"], ["C", "c"]]);
    assertJson([...h], [["c", "c"], ["x-a", "1, 3"], ["x-b", "2"]]);
    assertJson([...h.keys()], ["c", "x-a", "x-b"]);
    const seen = [];
    h.forEach((v, k) => seen.push(`${k}=${v}`));
    assertJson(seen, ["c=c", "x-a=1, 3", "x-b=2"]);
  }],
  ["Headers set-cookie stays separate", () => {
    const h = new Headers();
    h.append("Set-Cookie", "a=1"); h.append("set-cookie", "b=2"); h.append("Age", "3");
    assertJson([...h], [["age", "3"], ["set-cookie", "a=1"], ["set-cookie", "b=2"]]);
    assertJson(h.getSetCookie(), ["a=1", "b=2"]);
    assertEq(h.get("set-cookie"), "a=1, b=2");
    assertJson(new Headers().getSetCookie(), []);
  }],
  ["Headers validation", () => {
    const h = new Headers();
    assertThrows(() => h.append("bad name", "x"), TypeError);
    assertThrows(() => h.append("", "x"), TypeError);
    assertThrows(() => h.append("x", "a\nb"), TypeError);
    assertThrows(() => h.append("x", "a\rb"), TypeError);
    assertThrows(() => h.append("x", "a\0b"), TypeError);
    assertThrows(() => h.set("x", "€"), TypeError);
    assertThrows(() => h.get("bad:name"), TypeError);
    assertThrows(() => new Headers([["a", "b", "c"]]), TypeError);
    assertThrows(() => new Headers("x"), TypeError);
  }],
  ["Headers values are trimmed of HTTP whitespace", () => {
    const h = new Headers();
    h.append("x", " \t a b \r\n");
    assertEq(h.get("x"), "a b");
    h.set("y", "\n v ");
    assertEq(h.get("y"), "v");
  }],
  ["Headers from Headers copies", () => {
    const a = new Headers({ A: "1" });
    a.append("set-cookie", "s=1"); a.append("set-cookie", "s=2");
    const b = new Headers(a);
    a.set("a", "2");
    assertEq(b.get("a"), "1");
    assertJson(b.getSetCookie(), ["s=1", "s=2"]);
    assertEq(Object.prototype.toString.call(b), "[object Headers]");
  }],

  // ---------------- Request ----------------
  ["Request defaults", () => {
    const r = new Request("https://example.com/a?b#c");
    assertEq(r.url, "https://example.com/a?b#c"); assertEq(r.method, "GET");
    assert(r.headers instanceof Headers, "headers"); assertEq(r.body, null); assertEq(r.bodyUsed, false);
    assertEq(r.redirect, "follow"); assert(r.signal instanceof AbortSignal, "signal"); assertEq(r.signal.aborted, false);
    assertEq(r.destination, ""); assertEq(r.mode, "cors"); assertEq(r.credentials, "same-origin"); assertEq(r.cache, "default");
  }],
  ["Request method normalisation and validation", () => {
    assertEq(new Request("http://h/", { method: "post" }).method, "POST");
    assertEq(new Request("http://h/", { method: "dElEtE" }).method, "DELETE");
    assertEq(new Request("http://h/", { method: "patch" }).method, "patch");
    assertEq(new Request("http://h/", { method: "CUSTOM" }).method, "CUSTOM");
    assertThrows(() => new Request("http://h/", { method: "connect" }), TypeError);
    assertThrows(() => new Request("http://h/", { method: "TRACE" }), TypeError);
    assertThrows(() => new Request("http://h/", { method: "bad method" }), TypeError);
  }],
  ["Request GET/HEAD with body throws", () => {
    assertThrows(() => new Request("http://h/", { body: "x" }), TypeError);
    assertThrows(() => new Request("http://h/", { method: "HEAD", body: "x" }), TypeError);
    assertEq(new Request("http://h/", { body: null }).body, null);
  }],
  ["Request URL validation", () => {
    assertThrows(() => new Request("/relative"), TypeError);
    assertThrows(() => new Request("http://user:pw@h/"), TypeError);
    assertEq(new Request(new URL("http://h/u")).url, "http://h/u");
    assertThrows(() => new Request("http://h/", { redirect: "bogus" }), TypeError);
    assertEq(new Request("http://h/", { redirect: "manual" }).redirect, "manual");
  }],
  ["Request body and content-type", async () => {
    const r = new Request("http://h/", { method: "POST", body: "hello" });
    assertEq(r.headers.get("content-type"), "text/plain;charset=UTF-8");
    assert(r.body instanceof ReadableStream, "body stream");
    assertEq(await r.text(), "hello");
    assertEq(r.bodyUsed, true);
    await assertRejects(r.text(), TypeError);
    const j = new Request("http://h/", { method: "PUT", body: '{"a":1}', headers: { "content-type": "application/json" } });
    assertEq(j.headers.get("content-type"), "application/json");
    assertJson(await j.json(), { a: 1 });
  }],
  ["Request from Request copies and transfers the body", async () => {
    const a = new Request("http://h/x", { method: "POST", body: "data", headers: { "X-A": "1" } });
    const b = new Request(a);
    assertEq(b.url, "http://h/x"); assertEq(b.method, "POST"); assertEq(b.headers.get("x-a"), "1");
    assertEq(a.bodyUsed, true, "input body is consumed by the new request");
    assertEq(await b.text(), "data");
    assertThrows(() => new Request(a), TypeError);
    const c = new Request(new Request("http://h/y", { headers: { "X-B": "2" } }), { method: "PUT", headers: { "X-C": "3" } });
    assertEq(c.method, "PUT"); assertEq(c.headers.has("x-b"), false); assertEq(c.headers.get("x-c"), "3");
  }],
  ["Request.clone gives independent bodies", async () => {
    const a = new Request("http://h/", { method: "POST", body: "abc" });
    const b = a.clone();
    assertEq(await a.text(), "abc");
    assertEq(await b.text(), "abc");
    assertThrows(() => a.clone(), TypeError);
    b.headers.set("x", "1");
    assertEq(a.headers.has("x"), false);
  }],
  ["Request signal follows init signal", () => {
    const c = new AbortController();
    const r = new Request("http://h/", { signal: c.signal });
    assert(r.signal !== c.signal, "own signal object");
    const clone = r.clone();
    c.abort("why");
    assertEq(r.signal.aborted, true); assertEq(r.signal.reason, "why"); assertEq(clone.signal.aborted, true);
    assertThrows(() => new Request("http://h/", { signal: {} }), TypeError);
  }],
  ["Request with ReadableStream body", async () => {
    const stream = new ReadableStream({ start(c) { c.enqueue(new TextEncoder().encode("st")); c.enqueue(new TextEncoder().encode("ream")); c.close(); } });
    const r = new Request("http://h/", { method: "POST", body: stream, duplex: "half" });
    assertEq(r.body, stream);
    assertEq(r.headers.has("content-type"), false);
    assertEq(await r.text(), "stream");
  }],

  // ---------------- Response ----------------
  ["Response defaults", () => {
    const r = new Response();
    assertEq(r.status, 200); assertEq(r.ok, true); assertEq(r.statusText, ""); assertEq(r.type, "default");
    assertEq(r.url, ""); assertEq(r.redirected, false); assertEq(r.body, null); assertEq(r.bodyUsed, false);
    assertEq(Object.prototype.toString.call(r), "[object Response]");
  }],
  ["Response status validation", () => {
    for (const s of [199, 600, 0, 1000]) assertThrows(() => new Response(null, { status: s }), RangeError);
    assertEq(new Response(null, { status: 404, statusText: "Not Found" }).ok, false);
    assertEq(new Response(null, { status: 599 }).status, 599);
    assertThrows(() => new Response(null, { statusText: "bad\nline" }), TypeError);
    assertThrows(() => new Response("body", { status: 204 }), TypeError);
    assertEq(new Response(null, { status: 204 }).status, 204);
  }],
  ["Response string body", async () => {
    const r = new Response("héllo");
    assertEq(r.headers.get("content-type"), "text/plain;charset=UTF-8");
    assertEq(await r.text(), "héllo");
    assertEq(r.bodyUsed, true);
    await assertRejects(r.text(), TypeError);
    await assertRejects(r.arrayBuffer(), TypeError);
  }],
  ["Response binary bodies", async () => {
    const src = bytes(1, 2, 3);
    const r = new Response(src);
    src[0] = 9;
    assertEq(r.headers.has("content-type"), false);
    assert(sameBytes(new Uint8Array(await r.arrayBuffer()), bytes(1, 2, 3)), "copied at construction");
    assert(sameBytes(await new Response(src.buffer).bytes(), bytes(9, 2, 3)), "ArrayBuffer body");
    assert(sameBytes(await new Response(new DataView(src.buffer, 1)).bytes(), bytes(2, 3)), "DataView body");
    assertEq(await new Response(new Uint16Array([0x4241])).text(), "AB");
  }],
  ["Response blob and Blob bodies", async () => {
    const r = new Response(new Blob(["<p>"], { type: "text/html" }));
    assertEq(r.headers.get("content-type"), "text/html");
    const b = await r.blob();
    assert(b instanceof Blob, "Blob"); assertEq(b.type, "text/html"); assertEq(await b.text(), "<p>");
    assertEq(new Response(new Blob(["x"])).headers.has("content-type"), false);
  }],
  ["Response URLSearchParams body", async () => {
    const r = new Response(new URLSearchParams({ a: "1 2", b: "é" }));
    assertEq(r.headers.get("content-type"), "application/x-www-form-urlencoded;charset=UTF-8");
    assertEq(await r.text(), "a=1+2&b=%C3%A9");
  }],
  ["Response keeps an explicit content-type", async () => {
    const r = new Response("{}", { headers: { "Content-Type": "application/json" } });
    assertEq(r.headers.get("content-type"), "application/json");
    assertJson(await r.json(), {});
  }],
  ["Response.json static", async () => {
    const r = Response.json({ a: [1, "x"] }, { status: 201, headers: { "X-Y": "z" } });
    assertEq(r.status, 201); assertEq(r.headers.get("content-type"), "application/json"); assertEq(r.headers.get("x-y"), "z");
    assertJson(await r.json(), { a: [1, "x"] });
    assertThrows(() => Response.json(undefined), TypeError);
    assertThrows(() => Response.json(() => 1), TypeError);
    assertThrows(() => Response.json(1n), TypeError);
    assertThrows(() => Response.json({}, { status: 204 }), TypeError);
    assertEq(await Response.json("s").text(), '"s"');
  }],
  ["Response.json bad JSON body rejects with SyntaxError", async () => {
    await assertRejects(new Response("{nope").json(), SyntaxError);
  }],
  ["Response.redirect", () => {
    const r = Response.redirect("https://example.com/a b");
    assertEq(r.status, 302); assertEq(r.headers.get("location"), "https://example.com/a%20b"); assertEq(r.body, null);
    assertEq(Response.redirect("http://h/", 301).status, 301);
    assertEq(Response.redirect(new URL("http://h/"), 308).status, 308);
    assertThrows(() => Response.redirect("http://h/", 200), RangeError);
    assertThrows(() => Response.redirect("http://h/", 304), RangeError);
    assertThrows(() => Response.redirect("not a url"), TypeError);
    assertThrows(() => r.headers.set("x", "y"), TypeError);
  }],
  ["Response.error", () => {
    const r = Response.error();
    assertEq(r.status, 0); assertEq(r.type, "error"); assertEq(r.ok, false); assertEq(r.statusText, ""); assertEq(r.body, null);
    assertThrows(() => r.headers.append("a", "b"), TypeError);
    assertThrows(() => r.headers.delete("a"), TypeError);
  }],
  ["Response ReadableStream body", async () => {
    const enc = new TextEncoder();
    const rs = new ReadableStream({ start(c) { c.enqueue(enc.encode("a")); c.enqueue(enc.encode("bc")); c.close(); } });
    const r = new Response(rs);
    assertEq(r.body, rs);
    assertEq(await r.text(), "abc");
    assertEq(r.bodyUsed, true);
    const locked = new ReadableStream();
    locked.getReader();
    assertThrows(() => new Response(locked), TypeError);
  }],
  ["Response stream with non-Uint8Array chunks rejects", async () => {
    const r = new Response(new ReadableStream({ start(c) { c.enqueue("text"); c.close(); } }));
    await assertRejects(r.text(), TypeError);
  }],
  ["Response body getter yields the bytes", async () => {
    const r = new Response("xyz");
    const chunks = await readAll(r.body);
    assertEq(new TextDecoder().decode(chunks[0]), "xyz");
    assertEq(r.bodyUsed, true);
    await assertRejects(r.text(), TypeError);
  }],
  ["Response.clone", async () => {
    const r = new Response("data", { status: 201, headers: { a: "1" } });
    const c = r.clone();
    assertEq(c.status, 201); assertEq(c.headers.get("a"), "1");
    assertEq(await r.text(), "data"); assertEq(await c.text(), "data");
    assertThrows(() => r.clone(), TypeError);
    const s = new Response(new ReadableStream({ start(ctl) { ctl.enqueue(bytes(65)); ctl.close(); } }));
    const s2 = s.clone();
    assertEq(await s2.text(), "A"); assertEq(await s.text(), "A");
  }],
  ["Response.clone and Request.clone tee the body with cloned chunks", async () => {
    const chunk = new Uint16Array([1, 2, 3]);
    const r = new Response(new ReadableStream({ start(ctl) { ctl.enqueue(chunk); ctl.close(); } }));
    const c = r.clone();
    const [a] = await readAll(r.body);
    const [b] = await readAll(c.body);
    assertEq(a, chunk); // branch 1 keeps the original chunk
    assert(b !== chunk && b.buffer !== chunk.buffer && b instanceof Uint16Array, "branch 2 gets a copy");
    assertJson([...b], [1, 2, 3]);
    const req = new Request("http://x/", { method: "POST", body: new ReadableStream({ start(ctl) { ctl.enqueue(chunk); ctl.close(); } }), duplex: "half" });
    const reqClone = req.clone();
    const [ra] = await readAll(req.body);
    const [rb] = await readAll(reqClone.body);
    assertEq(ra, chunk); assert(rb !== chunk && rb.buffer !== chunk.buffer, "request clone gets a copy");
    // An uncloneable chunk errors both branches.
    const bad = new Response(new ReadableStream({ start(ctl) { ctl.enqueue(() => 1); } }));
    const badClone = bad.clone();
    const errs = await Promise.all([bad.body.getReader().read(), badClone.body.getReader().read()].map((p) => p.then(() => null, (e) => e)));
    for (const e of errs) assert(e instanceof DOMException && e.name === "DataCloneError", String(e));
  }],
  ["Response text strips a UTF-8 BOM", async () => {
    assertEq(await new Response(bytes(0xef, 0xbb, 0xbf, 0x68, 0x69)).text(), "hi");
    assertEq(await new Response("\ufeffhi").text(), "hi");
  }],
  ["Response null body reads as empty", async () => {
    assertEq(await new Response().text(), "");
    assertEq((await new Response(null).arrayBuffer()).byteLength, 0);
    assertEq(new Response().bodyUsed, false);
  }],
  ["formData of a body that is not a form (text/plain) is a TypeError", async () => {
    await assertRejects(new Response("a=b").formData(), TypeError);
  }],
  ["__kvmjsBody returns strings directly and bytes otherwise", async () => {
    if (!hostBody) return; // host-internal: not reachable from inside the guest
    const __kvmjsBody = hostBody;
    const s = new Response("plain string");
    assertEq(await __kvmjsBody.bytes(s), "plain string");
    assertEq(s.bodyUsed, false, "not consumed");
    assertEq(await s.text(), "plain string");
    assertEq(await __kvmjsBody.bytes(new Response()), "");
    assert(sameBytes(await __kvmjsBody.bytes(new Response(bytes(1, 2))), bytes(1, 2)), "bytes");
    assert(sameBytes(await __kvmjsBody.bytes(new Response(new Blob(["ab"]))), bytes(97, 98)), "blob");
    const streamed = new Response(new ReadableStream({ start(c) { c.enqueue(bytes(1)); c.enqueue(bytes(2, 3)); c.close(); } }));
    assert(sameBytes(await __kvmjsBody.bytes(streamed), bytes(1, 2, 3)), "stream drained");
    assertEq(await __kvmjsBody.bytes(Response.json({ a: 1 })), '{"a":1}');
    assertEq(await __kvmjsBody.bytes(new Request("http://h/", { method: "POST", body: "req" })), "req");
    const touched = new Response("still a string");
    void touched.body;
    assertEq(await __kvmjsBody.bytes(touched), "still a string");
    await assertRejects(__kvmjsBody.bytes({}), TypeError);
    assertEq(Object.keys(globalThis).includes("__kvmjsBody"), false, "non-enumerable");
  }],
  ["Body read fails at the first chunk that is not a Uint8Array", async () => {
    // Fetch "read all bytes": the TypeError comes at the bad chunk, not after the stream ends
    // (an endless stream of them would otherwise be read until memory runs out).
    let pulls = 0;
    const rs = new ReadableStream({ pull(c) { pulls++; c.enqueue("not bytes"); if (pulls === 1000) c.close(); } });
    await assertRejects(new Response(rs).text(), TypeError);
    assert(pulls < 5, `read on after the bad chunk: ${pulls} pulls`);
  }],

];
