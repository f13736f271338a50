// Web API conformance tests: structuredClone, crypto, performance, navigator, console.
import { show, assert, assertEq, assertJson, assertThrows, captureLog, logged } from "./helpers.js";

export const tests = [
  // ---------------- structuredClone ----------------
  ["structuredClone resizable ArrayBuffers and length-tracking views", () => {
    if (typeof ArrayBuffer.prototype.resize !== "function") return;
    const ab = new ArrayBuffer(8, { maxByteLength: 64 });
    new Uint8Array(ab).set([1, 2, 3, 4, 5, 6, 7, 8]);
    const copy = structuredClone(ab);
    assert(copy.resizable && copy.maxByteLength === 64 && copy.byteLength === 8, "resizable kept");
    assertJson([...new Uint8Array(copy)], [1, 2, 3, 4, 5, 6, 7, 8]);
    const views = structuredClone({
      tracking: new Uint16Array(ab, 2), fixed: new Uint16Array(ab, 2, 2), dv: new DataView(ab, 4), fixedDv: new DataView(ab, 0, 4),
    });
    assert(views.tracking.buffer === views.fixed.buffer && views.fixed.buffer === views.dv.buffer, "one shared buffer");
    views.tracking.buffer.resize(16);
    assertEq(views.tracking.length, 7); assertEq(views.fixed.length, 2); assertEq(views.dv.byteLength, 12); assertEq(views.fixedDv.byteLength, 4);
    assertJson([...views.fixed], [...new Uint16Array(ab, 2, 2)]);
    // The probe leaves the source untouched.
    assertEq(ab.byteLength, 8); assertJson([...new Uint8Array(ab)], [1, 2, 3, 4, 5, 6, 7, 8]);
    const oob = new Uint8Array(ab, 4, 4); const oobDv = new DataView(ab, 6);
    ab.resize(2);
    for (const v of [oob, oobDv]) {
      let err = null; try { structuredClone(v); } catch (e) { err = e; }
      assert(err instanceof DOMException && err.name === "DataCloneError", String(err));
    }
    assertEq(ab.byteLength, 2);
    const full = new ArrayBuffer(4, { maxByteLength: 4 }); new Uint8Array(full).set([9, 8, 7, 6]);
    const t = structuredClone(new Uint8Array(full, 1));
    assertJson([...t], [8, 7, 6]); assertJson([...new Uint8Array(full)], [9, 8, 7, 6]);
  }],
  ["structuredClone transfer detaches ArrayBuffers", () => {
    const dataCloneError = (fn) => {
      let err = null; try { fn(); } catch (e) { err = e; }
      assert(err instanceof DOMException && err.name === "DataCloneError", String(err));
    };
    dataCloneError(() => structuredClone(new Blob([]), { transfer: [new Blob([])] }));
    const dup = new ArrayBuffer(1);
    dataCloneError(() => structuredClone(dup, { transfer: [dup, dup] }));
    assertThrows(() => structuredClone(1, { transfer: [1] }), TypeError);
    if (typeof ArrayBuffer.prototype.transfer !== "function") return;
    const buffer = new Uint8Array([1, 2, 3]).buffer;
    const { view, again } = structuredClone({ view: new Uint8Array(buffer, 1), again: buffer }, { transfer: [buffer] });
    assertEq(buffer.byteLength, 0); assert(buffer.detached, "detached");
    assertEq(view.buffer, again); assertJson([...view], [2, 3]);
    dataCloneError(() => structuredClone(buffer, { transfer: [buffer] }));
    dataCloneError(() => structuredClone(buffer));
    // A failed clone detaches nothing.
    const kept = new ArrayBuffer(4);
    dataCloneError(() => structuredClone({ kept, f: Symbol("x") }, { transfer: [kept] }));
    assertEq(kept.byteLength, 4);
    // Listed but not reached: still detached.
    const unreached = new ArrayBuffer(2);
    structuredClone(1, { transfer: [unreached] });
    assert(unreached.detached, "unreached buffer detached");
    const rab = new ArrayBuffer(16, { maxByteLength: 1024 });
    const ta = structuredClone(new Uint8Array(rab), { transfer: [rab] });
    assertEq(rab.byteLength, 0); assertEq(ta.buffer.maxByteLength, 1024);
    ta.buffer.resize(32); assertEq(ta.length, 32);
  }],
  ["structuredClone primitives", () => {
    for (const v of [1, -0, NaN, "s", true, null, undefined, 10n]) assert(Object.is(structuredClone(v), v), show(v));
    const boxed = structuredClone(Object(5n));
    assertEq(typeof boxed, "object"); assertEq(boxed.valueOf(), 5n);
    assertEq(structuredClone(new String("w")).valueOf(), "w");
    assertEq(structuredClone(new Boolean(false)).valueOf(), false);
  }],
  ["structuredClone Date, RegExp, Map, Set", () => {
    const d = new Date(12345);
    const cd = structuredClone(d);
    assert(cd instanceof Date && cd !== d && cd.getTime() === 12345, "date");
    const re = structuredClone(/a+b/gi);
    assert(re instanceof RegExp, "regexp"); assertEq(re.source, "a+b"); assertEq(re.flags, "gi");
    const m = structuredClone(new Map([[{ k: 1 }, new Set([1, 2])]]));
    const [[k, s]] = [...m];
    assertEq(k.k, 1); assert(s instanceof Set && s.has(2), "set in map");
  }],
  ["structuredClone preserves cycles and shared references", () => {
    const shared = { n: 1 };
    const o = { a: shared, b: shared, list: [shared] };
    o.self = o;
    const c = structuredClone(o);
    assert(c !== o, "new object"); assertEq(c.self, c); assertEq(c.a, c.b); assertEq(c.list[0], c.a); assert(c.a !== shared, "deep");
    const m = new Map(); m.set("me", m);
    const cm = structuredClone(m);
    assertEq(cm.get("me"), cm);
  }],
  ["structuredClone typed arrays share cloned buffers", () => {
    const buf = new ArrayBuffer(8);
    const a = new Uint8Array(buf, 0, 4), b = new Uint32Array(buf, 4, 1), dv = new DataView(buf, 2, 2);
    a[0] = 7; b[0] = 0xdeadbeef;
    const c = structuredClone({ a, b, dv, buf });
    assertEq(c.a.buffer, c.buf); assertEq(c.b.buffer, c.buf); assertEq(c.dv.buffer, c.buf);
    assert(c.buf !== buf, "copied"); assertEq(c.a[0], 7); assertEq(c.b[0], 0xdeadbeef);
    assert(c.dv instanceof DataView && c.dv.byteOffset === 2 && c.dv.byteLength === 2, "dataview");
    assert(structuredClone(new BigInt64Array([5n]))[0] === 5n, "bigint64");
  }],
  ["structuredClone errors", () => {
    const e = structuredClone(new RangeError("out"));
    assert(e instanceof RangeError, "RangeError"); assertEq(e.message, "out"); assertEq(e.name, "RangeError");
    class MyErr extends Error {}
    const m = structuredClone(new MyErr("mine"));
    assertEq(Object.getPrototypeOf(m), Error.prototype); assertEq(m.message, "mine");
    const d = structuredClone(new DOMException("gone", "NotFoundError"));
    assert(d instanceof DOMException, "DOMException"); assertEq(d.name, "NotFoundError"); assertEq(d.code, 8);
  }],
  ["structuredClone rejects uncloneable values with DataCloneError", () => {
    for (const v of [() => 1, Symbol("s"), new WeakMap(), new WeakSet(), Promise.resolve(), { f() {} }, [Symbol.iterator], new Headers(), new EventTarget()]) {
      const e = assertThrows(() => structuredClone(v), DOMException, "DataCloneError");
      assertEq(e.code, 25);
    }
    assertThrows(() => structuredClone(), TypeError);
  }],
  ["structuredClone plain-object semantics", () => {
    class Point { constructor() { this.x = 1; } get y() { return 2; } }
    const p = structuredClone(new Point());
    assertEq(Object.getPrototypeOf(p), Object.prototype); assertEq(p.x, 1); assertEq("y" in p, false);
    const src = { get g() { return 5; } };
    Object.defineProperty(src, "hidden", { value: 1, enumerable: false });
    src[Symbol("s")] = 1;
    const c = structuredClone(src);
    assertEq(Object.getOwnPropertyDescriptor(c, "g").value, 5); assertEq("hidden" in c, false);
    assertEq(Object.getOwnPropertySymbols(c).length, 0);
    const arr = [1, , 3]; arr.extra = "e";
    const ca = structuredClone(arr);
    assertEq(ca.length, 3); assertEq(1 in ca, false); assertEq(ca.extra, "e");
    assertEq(structuredClone({ ["__proto__"]: 1, a: 2 }).a, 2);
  }],
  ["structuredClone Blob and File", async () => {
    const f = structuredClone(new File(["zz"], "n.txt", { type: "text/x", lastModified: 9 }));
    assert(f instanceof File, "File"); assertEq(f.name, "n.txt"); assertEq(f.lastModified, 9); assertEq(await f.text(), "zz");
    const b = structuredClone(new Blob(["q"], { type: "a/b" }));
    assertEq(b.type, "a/b"); assertEq(await b.text(), "q");
  }],

  // ---------------- crypto / performance / navigator / self ----------------
  ["crypto.getRandomValues", () => {
    const a = new Uint8Array(64);
    assertEq(crypto.getRandomValues(a), a);
    assert(a.some((x) => x !== 0), "filled");
    for (const T of [Int8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array, BigInt64Array, BigUint64Array]) crypto.getRandomValues(new T(4));
    crypto.getRandomValues(new Uint8Array(65536));
  }],
  ["crypto.getRandomValues errors", () => {
    assertThrows(() => crypto.getRandomValues(new Float32Array(4)), DOMException, "TypeMismatchError");
    assertThrows(() => crypto.getRandomValues(new Float64Array(4)), DOMException, "TypeMismatchError");
    assertThrows(() => crypto.getRandomValues(new DataView(new ArrayBuffer(4))), DOMException, "TypeMismatchError");
    const q = assertThrows(() => crypto.getRandomValues(new Uint8Array(65537)), DOMException, "QuotaExceededError");
    assertEq(q.code, 22);
    assertThrows(() => crypto.getRandomValues(new Uint32Array(16385)), DOMException, "QuotaExceededError");
    assertThrows(() => crypto.getRandomValues([1, 2]), TypeError);
  }],
  ["crypto.randomUUID", () => {
    const seen = new Set();
    for (let i = 0; i < 50; i++) {
      const u = crypto.randomUUID();
      assert(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(u), u);
      seen.add(u);
    }
    assertEq(seen.size, 50);
    assertEq(Object.prototype.toString.call(crypto), "[object Crypto]");
  }],
  ["performance", () => {
    const a = performance.now(), b = performance.now();
    assert(typeof a === "number" && b >= a, "monotonic");
    assert(Math.abs(performance.timeOrigin + performance.now() - Date.now()) < 1000, "timeOrigin + now ~ Date.now()");
    assertJson(Object.keys(performance.toJSON()), ["timeOrigin"]);
    assertEq(performance.toJSON().timeOrigin, performance.timeOrigin);
  }],
  ["performance is an EventTarget with user timing", () => {
    assert(performance instanceof EventTarget, "EventTarget");
    performance.clearMarks(); performance.clearMeasures();
    const a = performance.mark("a", { detail: { n: 1 } });
    assert(a instanceof PerformanceMark && a instanceof PerformanceEntry, "a PerformanceMark");
    assertJson([a.name, a.entryType, a.duration, a.detail], ["a", "mark", 0, { n: 1 }]);
    performance.mark("b", { startTime: a.startTime + 5 });
    const m = performance.measure("a-b", "a", "b");
    assertJson([m.entryType, m.startTime === a.startTime, m.duration], ["measure", true, 5]);
    const o = performance.measure("opts", { start: "a", duration: 2, detail: "d" });
    assertJson([o.duration, o.detail], [2, "d"]);
    assertJson(performance.getEntriesByType("mark").map((e) => e.name), ["a", "b"]);
    assertJson(performance.getEntriesByName("a-b").map((e) => e.entryType), ["measure"]);
    assertThrows(() => performance.measure("x", "no-such-mark"), DOMException, "SyntaxError");
    performance.clearMarks("a");
    assertJson(performance.getEntriesByType("mark").map((e) => e.name), ["b"]);
    performance.clearMarks(); performance.clearMeasures();
    assertEq(performance.getEntries().length, 0);
  }],
  ["navigator and self", () => {
    assertEq(navigator.userAgent, "kvmjs");
    assertEq(self, globalThis);
    assertEq(Object.keys(globalThis).includes("fetch"), false);
  }],
  ["globals are non-enumerable and internals hidden", () => {
    const names = ["URL", "Headers", "Response", "console", "structuredClone", "setTimeout", "TextEncoder", "ReadableStream", "AbortController", "Blob", "crypto"];
    for (const n of names) {
      const d = Object.getOwnPropertyDescriptor(globalThis, n);
      assert(d && d.writable && d.configurable && !d.enumerable, `descriptor of ${n}`);
    }
    assertEq("__native" in globalThis, false);
    assertEq("__kvmjsInternal" in globalThis, false);
  }],

  // ---------------- console ----------------
  ["console methods all exist and do not throw", () => {
    captureLog(() => {
      for (const m of ["log", "info", "warn", "error", "debug", "trace", "dir", "dirxml", "table", "count", "countReset", "group", "groupCollapsed", "groupEnd", "time", "timeLog", "timeEnd", "clear"]) {
        assertEq(typeof console[m], "function", m);
      }
      console.log(); console.info("i"); console.debug("d"); console.trace("t"); console.dir({ a: 1 });
      console.table([{ a: 1 }]); console.assert(true, "never"); console.time("t1"); console.timeLog("t1"); console.timeEnd("t1");
      console.timeEnd("nope"); console.countReset("nope");
      const { log } = console; log("detached");
    });
  }],
  ["console levels", () => {
    const lines = captureLog(() => { console.debug("d"); console.log("l"); console.info("i"); console.warn("w"); console.error("e"); });
    if (!lines) return;
    assertJson(lines, [[0, "d"], [1, "l"], [1, "i"], [2, "w"], [3, "e"]]);
  }],
  ["console formats primitives and strings", () => {
    const out = logged(() => console.log("a", 1, "b", -0, 5n, null, undefined, true, Symbol("s")));
    if (out === null) return;
    assertEq(out, "a 1 b -0 5n null undefined true Symbol(s)");
    assertEq(logged(() => console.log(["a", "it's"])), `[ 'a', "it's" ]`);
    assertEq(logged(() => console.log("multi\nline")), "multi\nline");
    assertEq(logged(() => console.log({ s: "x\ny" })), "{ s: 'x\\ny' }");
  }],
  ["console formats objects like util.inspect", () => {
    const out = logged(() => console.log({ a: 1, b: [1, 2] }));
    if (out === null) return;
    assertEq(out, "{ a: 1, b: [ 1, 2 ] }");
    assertEq(logged(() => console.log({})), "{}");
    assertEq(logged(() => console.log([])), "[]");
    assertEq(logged(() => console.log({ "a-b": 1, [Symbol("k")]: 2 })), "{ 'a-b': 1, [Symbol(k)]: 2 }");
    assertEq(logged(() => console.log({ a: { b: { c: { d: 1 } } } })), "{ a: { b: { c: [Object] } } }");
    assertEq(logged(() => console.log([[[[1]]]])), "[ [ [ [Array] ] ] ]");
    class Foo { constructor() { this.x = 1; } }
    assertEq(logged(() => console.log(new Foo())), "Foo { x: 1 }");
    assertEq(logged(() => console.log(Object.create(null))), "[Object: null prototype] {}");
    assertEq(logged(() => console.log([1, , 3])), "[ 1, <1 empty item>, 3 ]");
    assertEq(logged(() => console.log({ get g() { return 1; } })), "{ g: [Getter] }");
  }],
  ["console formats built-in types", () => {
    const out = logged(() => console.log(new Map([["a", 1]])));
    if (out === null) return;
    assertEq(out, "Map(1) { 'a' => 1 }");
    assertEq(logged(() => console.log(new Set([1, 2]))), "Set(2) { 1, 2 }");
    assertEq(logged(() => console.log(new Date(0))), "1970-01-01T00:00:00.000Z");
    assertEq(logged(() => console.log(/x/g)), "/x/g");
    assertEq(logged(() => console.log(new Uint8Array([1, 2]))), "Uint8Array(2) [ 1, 2 ]");
    assertEq(logged(() => console.log(function foo() {})), "[Function: foo]");
    assertEq(logged(() => console.log(class Bar {})), "[class Bar]");
    assertEq(logged(() => console.log(async () => {})), "[AsyncFunction (anonymous)]");
    assertEq(logged(() => console.log(new Number(3))), "[Number: 3]");
    assertEq(logged(() => console.log(new ArrayBuffer(2))), "ArrayBuffer { [Uint8Contents]: <00 00>, byteLength: 2 }");
  }],
  ["console marks circular references", () => {
    const o = { name: "o" };
    o.self = o;
    const out = logged(() => console.log(o));
    if (out === null) return;
    assertEq(out, "<ref *1> { name: 'o', self: [Circular *1] }");
  }],
  ["console formats errors with their stack", () => {
    const out = logged(() => console.log(new TypeError("bad thing")));
    if (out === null) return;
    assert(out.startsWith("TypeError: bad thing"), out);
    const e = new Error("with code"); e.code = "E_X";
    const withProps = logged(() => console.error(e));
    assert(withProps.startsWith("Error: with code") && withProps.includes("code: 'E_X'"), withProps);
    assert(logged(() => console.log({ err: new RangeError("inner") })).includes("RangeError: inner"));
    assert(logged(() => console.log(new DOMException("dom", "AbortError"))).startsWith("AbortError: dom"));
  }],
  ["console printf-style format specifiers", () => {
    const out = logged(() => console.log("%s=%d", "x", 42));
    if (out === null) return;
    assertEq(out, "x=42");
    assertEq(logged(() => console.log("%i|%f|%d", 4.9, "1.5", "7")), "4|1.5|7");
    assertEq(logged(() => console.log("%j", { a: [1] })), '{"a":[1]}');
    assertEq(logged(() => console.log("%o and %O", [1], { b: 2 })), "[ 1 ] and { b: 2 }");
    assertEq(logged(() => console.log("%cstyled", "color: red")), "styled");
    assertEq(logged(() => console.log("100%% %s", "sure")), "100% sure");
    assertEq(logged(() => console.log("%s extra", "a", "b", 3)), "a extra b 3");
    assertEq(logged(() => console.log("%s", { a: 1 })), "{ a: 1 }");
    assertEq(logged(() => console.log("%d", 3n)), "3n");
    assertEq(logged(() => console.log("%s missing %s", "one")), "one missing %s");
  }],
  ["console group indentation, count, assert, time", () => {
    const out = logged(() => {
      console.group("G");
      console.log("inner\nsecond");
      console.group();
      console.log("deeper");
      console.groupEnd();
      console.groupEnd();
      console.log("outer");
    });
    if (out === null) return;
    assertEq(out, "G\n  inner\n  second\n    deeper\nouter");
    // Counters are global state, so the labels are unique per run.
    const c = `c${Math.random()}`;
    assertEq(logged(() => { console.count(c); console.count(c); console.count(c + "x"); console.countReset(c); console.count(c); }), `${c}: 1\n${c}: 2\n${c}x: 1\n${c}: 1`);
    assertEq(logged(() => console.countReset(c + "none")), `Count for '${c}none' does not exist`);
    const a = captureLog(() => { console.assert(false, "msg %s", "here"); console.assert(0); console.assert(false, { o: 1 }); });
    assertJson(a, [[3, "Assertion failed: msg here"], [3, "Assertion failed"], [3, "Assertion failed { o: 1 }"]]);
    const t = logged(() => { console.time("job"); console.timeEnd("job"); });
    assert(/^job: \d+\.\d{3}ms$/.test(t), t);
  }],
  ["console.table and console.dir", () => {
    const out = logged(() => console.table([{ a: 1, b: "x" }, { a: 2 }]));
    if (out === null) return;
    const lines = out.split("\n");
    assertEq(lines.length, 6);
    assert(lines[1].includes("(index)") && lines[1].includes("a") && lines[1].includes("b"), lines[1]);
    assert(lines[3].includes("'x'"), lines[3]);
    assertEq(logged(() => console.dir("str")), "'str'");
    assertEq(logged(() => console.dir({ a: { b: { c: { d: {} } } } }, { depth: 0 })), "{ a: [Object] }");
  }],
  ["console shows platform objects usefully", () => {
    const out = logged(() => console.log(new Headers({ a: "1" })));
    if (out === null) return;
    assertEq(out, "Headers { 'a': '1' }");
    assert(logged(() => console.log(new URL("http://h/p"))).includes("href: 'http://h/p'"));
    assertEq(logged(() => console.log(new URLSearchParams("a=1"))), "URLSearchParams { 'a' => '1' }");
  }],
];
