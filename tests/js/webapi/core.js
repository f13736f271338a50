// Web API conformance tests: DOMException, events, encoding, URL, timers, AbortSignal, Blob/File.
import {
  timerDriver, assert, assertEq, assertJson, assertThrows, ticks, drive, sleep, bytes, sameBytes,
  captureLog, logged, readAll,
} from "./helpers.js";

export const tests = [
  // ---------------- DOMException / events ----------------
  ["DOMException name, message, code", () => {
    const e = new DOMException("boom", "AbortError");
    assertEq(e.name, "AbortError"); assertEq(e.message, "boom"); assertEq(e.code, 20);
    assert(e instanceof Error, "instanceof Error"); assert(e instanceof DOMException);
    assertEq(String(e), "AbortError: boom");
    assertEq(Object.prototype.toString.call(e), "[object DOMException]");
  }],
  ["DOMException legacy codes and constants", () => {
    const code = (n) => new DOMException("", n).code;
    assertEq(code("TimeoutError"), 23); assertEq(code("DataCloneError"), 25); assertEq(code("InvalidStateError"), 11);
    assertEq(code("NotSupportedError"), 9); assertEq(code("SyntaxError"), 12); assertEq(code("InvalidCharacterError"), 5);
    assertEq(code("QuotaExceededError"), 22); assertEq(code("NotAllowedError"), 0); assertEq(code("constructor"), 0);
    assertEq(DOMException.ABORT_ERR, 20); assertEq(DOMException.DATA_CLONE_ERR, 25); assertEq(new DOMException().TIMEOUT_ERR, 23);
  }],
  ["DOMException defaults", () => {
    const e = new DOMException();
    assertEq(e.name, "Error"); assertEq(e.message, ""); assertEq(e.code, 0);
    assertEq(typeof e.stack === "string" || e.stack === undefined, true);
  }],
  ["Event defaults", () => {
    const e = new Event("foo");
    assertEq(e.type, "foo"); assertEq(e.bubbles, false); assertEq(e.cancelable, false); assertEq(e.defaultPrevented, false);
    assertEq(e.isTrusted, false); assertEq(e.eventPhase, 0); assertEq(e.target, null); assertEq(e.currentTarget, null);
    assertEq(typeof e.timeStamp, "number"); assertEq(e.composed, false); assertEq(Event.AT_TARGET, 2);
    assertThrows(() => new Event(), TypeError);
  }],
  ["Event preventDefault needs cancelable", () => {
    const a = new Event("x"); a.preventDefault(); assertEq(a.defaultPrevented, false);
    const b = new Event("x", { cancelable: true }); b.preventDefault(); assertEq(b.defaultPrevented, true); assertEq(b.returnValue, false);
  }],
  ["dispatchEvent returns !defaultPrevented", () => {
    const t = new EventTarget();
    t.addEventListener("x", (e) => e.preventDefault());
    assertEq(t.dispatchEvent(new Event("x", { cancelable: true })), false);
    assertEq(t.dispatchEvent(new Event("x")), true);
    assertEq(t.dispatchEvent(new Event("other", { cancelable: true })), true);
  }],
  ["target and currentTarget during dispatch", () => {
    const t = new EventTarget();
    let seen = null;
    t.addEventListener("x", function (e) { seen = [e.target, e.currentTarget, e.eventPhase, this]; });
    const ev = new Event("x");
    t.dispatchEvent(ev);
    assert(seen[0] === t && seen[1] === t && seen[3] === t, "targets"); assertEq(seen[2], 2);
    assertEq(ev.target, t); assertEq(ev.currentTarget, null); assertEq(ev.eventPhase, 0);
  }],
  ["addEventListener once", () => {
    const t = new EventTarget(); let n = 0;
    t.addEventListener("x", () => n++, { once: true });
    t.dispatchEvent(new Event("x")); t.dispatchEvent(new Event("x"));
    assertEq(n, 1);
  }],
  ["duplicate listeners are ignored, capture distinguishes", () => {
    const t = new EventTarget(); let n = 0; const f = () => n++;
    t.addEventListener("x", f); t.addEventListener("x", f); t.addEventListener("x", f, true); t.addEventListener("x", f, { capture: true });
    t.dispatchEvent(new Event("x"));
    assertEq(n, 2);
  }],
  ["removeEventListener matches capture flag", () => {
    const t = new EventTarget(); let n = 0; const f = () => n++;
    t.addEventListener("x", f, { capture: true });
    t.removeEventListener("x", f); t.dispatchEvent(new Event("x")); assertEq(n, 1);
    t.removeEventListener("x", f, true); t.dispatchEvent(new Event("x")); assertEq(n, 1);
  }],
  ["handleEvent objects", () => {
    const t = new EventTarget();
    const obj = { calls: 0, handleEvent(e) { this.calls++; assertEq(e.type, "x"); } };
    t.addEventListener("x", obj); t.dispatchEvent(new Event("x"));
    assertEq(obj.calls, 1);
  }],
  ["stopImmediatePropagation", () => {
    const t = new EventTarget(); const calls = [];
    t.addEventListener("x", (e) => { calls.push(1); e.stopImmediatePropagation(); });
    t.addEventListener("x", () => calls.push(2));
    t.dispatchEvent(new Event("x"));
    assertJson(calls, [1]);
  }],
  ["capture listeners run before bubble listeners at target", () => {
    const t = new EventTarget(); const calls = [];
    t.addEventListener("x", () => calls.push("bubble"));
    t.addEventListener("x", () => calls.push("capture"), true);
    t.dispatchEvent(new Event("x"));
    assertJson(calls, ["capture", "bubble"]);
  }],
  ["listener errors are reported, not thrown", () => {
    const t = new EventTarget(); let after = false;
    t.addEventListener("x", () => { throw new Error("listener boom"); });
    t.addEventListener("x", () => { after = true; });
    const lines = captureLog(() => assertEq(t.dispatchEvent(new Event("x")), true));
    assert(after, "second listener ran");
    if (lines) assert(lines.some(([lvl, m]) => lvl === 3 && m.includes("listener boom")), "reported via console.error");
  }],
  ["listener signal option removes listener on abort", () => {
    const t = new EventTarget(); const c = new AbortController(); let n = 0;
    t.addEventListener("x", () => n++, { signal: c.signal });
    t.dispatchEvent(new Event("x")); c.abort(); t.dispatchEvent(new Event("x"));
    assertEq(n, 1);
    t.addEventListener("x", () => n++, { signal: AbortSignal.abort() });
    t.dispatchEvent(new Event("x")); assertEq(n, 1);
    assertThrows(() => t.addEventListener("x", () => {}, { signal: {} }), TypeError);
  }],
  ["passive listeners cannot preventDefault", () => {
    const t = new EventTarget();
    t.addEventListener("x", (e) => e.preventDefault(), { passive: true });
    assertEq(t.dispatchEvent(new Event("x", { cancelable: true })), true);
  }],
  ["listeners added during dispatch do not run; removed ones do not run", () => {
    const t = new EventTarget(); const calls = [];
    const late = () => calls.push("late");
    const second = () => calls.push("second");
    t.addEventListener("x", () => { calls.push("first"); t.addEventListener("x", late); t.removeEventListener("x", second); });
    t.addEventListener("x", second);
    t.dispatchEvent(new Event("x"));
    assertJson(calls, ["first"]);
  }],
  ["re-dispatching an event being dispatched throws InvalidStateError", () => {
    const t = new EventTarget(); let err = null;
    t.addEventListener("x", (e) => { try { t.dispatchEvent(e); } catch (x) { err = x; } });
    t.dispatchEvent(new Event("x"));
    assert(err instanceof DOMException, "DOMException"); assertEq(err.name, "InvalidStateError");
    assertThrows(() => t.dispatchEvent({ type: "x" }), TypeError);
  }],
  ["CustomEvent detail", () => {
    assertEq(new CustomEvent("x").detail, null);
    const d = { a: 1 };
    const e = new CustomEvent("x", { detail: d, cancelable: true });
    assertEq(e.detail, d); assertEq(e.cancelable, true); assert(e instanceof Event);
  }],
  ["EventTarget subclass and Event subclass", () => {
    class Emitter extends EventTarget {}
    class MyEvent extends Event { constructor() { super("my"); this.extra = 7; } }
    const t = new Emitter(); let got = null;
    t.addEventListener("my", (e) => { got = e.extra; });
    t.dispatchEvent(new MyEvent());
    assertEq(got, 7);
  }],
  ["reportError logs and requires an argument", () => {
    const lines = captureLog(() => reportError(new TypeError("reported!")));
    if (lines) assert(lines.length === 1 && lines[0][0] === 3 && lines[0][1].includes("reported!"), "logged at error level");
    assertThrows(() => reportError(), TypeError);
  }],
  ["reportError fires a cancelable ErrorEvent at the global scope", () => {
    const err = new RangeError("to the global");
    let seen = null;
    const cancel = (e) => { seen = e; e.preventDefault(); };
    addEventListener("error", cancel);
    try {
      const lines = captureLog(() => reportError(err));
      assert(seen instanceof ErrorEvent && seen instanceof Event, "an ErrorEvent");
      assertEq(seen.type, "error"); assertEq(seen.error, err); assertEq(seen.cancelable, true);
      assert(seen.message.includes("to the global"), seen.message);
      assertEq(seen.target, globalThis);
      if (lines) assertEq(lines.length, 0); // cancelled: not logged
    } finally {
      removeEventListener("error", cancel);
    }
    // Not cancelled: logged. A throwing "error" listener does not recurse; both are logged.
    const thrower = () => { throw new TypeError("from the listener"); };
    self.addEventListener("error", thrower);
    try {
      const lines = captureLog(() => reportError(new Error("outer")));
      if (lines) {
        assertEq(lines.length, 2);
        assert(lines[0][1].includes("from the listener") && lines[1][1].includes("outer"), JSON.stringify(lines));
      }
    } finally {
      self.removeEventListener("error", thrower);
    }
    assertEq(new ErrorEvent("error").error, undefined); assertEq(new ErrorEvent("x", { lineno: 3 }).lineno, 3);
  }],
  ["the global scope is an EventTarget", () => {
    assert(self instanceof EventTarget, "self instanceof EventTarget");
    assertEq(globalThis.addEventListener, EventTarget.prototype.addEventListener);
    let calls = 0, target = null;
    const l = (e) => { calls++; target = e.currentTarget; };
    addEventListener("kvmjs-test", l);
    assertEq(dispatchEvent(new Event("kvmjs-test")), true);
    assertEq(calls, 1); assertEq(target, globalThis);
    const add = globalThis.addEventListener; // an unbound call uses the global
    add("kvmjs-test", l); // duplicate: ignored
    globalThis.dispatchEvent(new Event("kvmjs-test"));
    assertEq(calls, 2);
    removeEventListener("kvmjs-test", l);
    dispatchEvent(new Event("kvmjs-test"));
    assertEq(calls, 2);
    removeEventListener("kvmjs-test", null);
    assertThrows(() => EventTarget.prototype.addEventListener.call({}, "x", l), TypeError);
    assertThrows(() => EventTarget.prototype.dispatchEvent.call(new Event("y"), new Event("x")), TypeError);
    // Other EventTargets keep separate listener lists.
    const t = new EventTarget(); let other = 0;
    t.addEventListener("kvmjs-test", () => other++);
    dispatchEvent(new Event("kvmjs-test"));
    assertEq(other, 0);
  }],
  ["DOMException follows WebIDL (prototype chain, accessors, constants)", () => {
    assertEq(Object.getPrototypeOf(DOMException.prototype), Error.prototype);
    assertEq(Object.getPrototypeOf(DOMException), Function.prototype);
    for (const key of ["name", "message", "code"]) {
      const d = Object.getOwnPropertyDescriptor(DOMException.prototype, key);
      assert(typeof d.get === "function" && d.set === undefined && d.enumerable && d.configurable, key);
      assertThrows(() => d.get.call({}), TypeError);
      assertThrows(() => d.get.call(new Error("x")), TypeError);
    }
    const e = new DOMException("m", "InvalidCharacterError");
    assert(!Object.hasOwn(e, "name") && !Object.hasOwn(e, "message") && !Object.hasOwn(e, "code"), "no own props");
    Object.defineProperty(e, "name", { value: "WrongDocumentError" });
    assertEq(e.code, 5);
    assertThrows(() => DOMException("m"), TypeError);
    const c = Object.getOwnPropertyDescriptor(DOMException, "ABORT_ERR");
    assert(c.value === 20 && c.enumerable && !c.writable && !c.configurable, "constant on the constructor");
    assertEq(Object.getOwnPropertyDescriptor(DOMException.prototype, "ABORT_ERR").value, 20);
    assertEq(DOMException.prototype[Symbol.toStringTag], "DOMException");
    assert(e instanceof Error, "instanceof Error");
    const clone = structuredClone(new DOMException("cloned", "DataCloneError"));
    assert(clone instanceof DOMException, "clone is a DOMException");
    assertEq(clone.name, "DataCloneError"); assertEq(clone.message, "cloned"); assertEq(clone.code, 25);
    class MyException extends DOMException {}
    const sub = new MyException("sub", "AbortError");
    assertEq(sub.name, "AbortError"); assert(sub instanceof MyException, "subclass");
  }],

  // ---------------- encoding ----------------
  ["TextEncoder.encode", () => {
    const te = new TextEncoder();
    assertEq(te.encoding, "utf-8");
    assert(sameBytes(te.encode("aé€😀"), bytes(0x61, 0xc3, 0xa9, 0xe2, 0x82, 0xac, 0xf0, 0x9f, 0x98, 0x80)), "bytes");
    assertEq(te.encode().length, 0);
    assert(sameBytes(te.encode("\ud800"), bytes(0xef, 0xbf, 0xbd)), "lone surrogate");
    assert(te.encode("x") instanceof Uint8Array, "Uint8Array");
  }],
  ["TextEncoder.encodeInto", () => {
    const te = new TextEncoder();
    const dst = new Uint8Array(5);
    assertJson(te.encodeInto("a€😀", dst), { read: 2, written: 4 });
    assert(sameBytes(dst.subarray(0, 4), bytes(0x61, 0xe2, 0x82, 0xac)), "partial");
    const big = new Uint8Array(8);
    assertJson(te.encodeInto("😀!", big), { read: 3, written: 5 });
    assertThrows(() => te.encodeInto("a", new Uint16Array(4)), TypeError);
  }],
  ["TextDecoder basics and input types", () => {
    const td = new TextDecoder();
    assertEq(td.encoding, "utf-8"); assertEq(td.fatal, false); assertEq(td.ignoreBOM, false);
    const b = bytes(0x68, 0x69, 0xc3, 0xa9);
    assertEq(td.decode(b), "hié");
    assertEq(td.decode(b.buffer), "hié");
    assertEq(td.decode(new DataView(b.buffer, 1, 1)), "i");
    assertEq(td.decode(b.subarray(2)), "é");
    assertEq(td.decode(), "");
    assertThrows(() => td.decode("str"), TypeError);
  }],
  ["TextDecoder BOM handling", () => {
    const withBom = bytes(0xef, 0xbb, 0xbf, 0x41);
    assertEq(new TextDecoder().decode(withBom), "A");
    assertEq(new TextDecoder("utf-8", { ignoreBOM: true }).decode(withBom), "\ufeffA");
  }],
  ["TextDecoder fatal", () => {
    const bad = bytes(0x61, 0xff, 0x62);
    assertEq(new TextDecoder().decode(bad), "a\ufffdb");
    assertThrows(() => new TextDecoder("utf-8", { fatal: true }).decode(bad), TypeError);
    assertEq(new TextDecoder("utf-8", { fatal: true }).fatal, true);
  }],
  ["TextDecoder labels", () => {
    for (const l of ["utf8", " UTF-8\n", "unicode-1-1-utf-8", "Utf8"]) assertEq(new TextDecoder(l).encoding, "utf-8");
    assertEq(new TextDecoder("latin1").encoding, "windows-1252");
    assertEq(new TextDecoder(" UTF-16\n").encoding, "utf-16le");
    assertEq(new TextDecoder("SJIS").encoding, "shift_jis");
    assertThrows(() => new TextDecoder("iso-2022-kr"), RangeError); // the replacement encoding
    assertThrows(() => new TextDecoder("nonsense"), RangeError);
  }],
  ["TextDecoder legacy and UTF-16 encodings", () => {
    assertEq(new TextDecoder("windows-1251").decode(bytes(0x88, 0xc0)), "\u20ac\u0410");
    assertEq(new TextDecoder("utf-16le").decode(bytes(0xff, 0xfe, 0x41, 0x00)), "A");
    assertEq(new TextDecoder("utf-16be").decode(bytes(0xff, 0xfe)), "\ufffe", "another encoding's BOM is content");
    const td = new TextDecoder("shift_jis");
    assertEq(td.decode(bytes(0x82), { stream: true }), "");
    assertEq(td.decode(bytes(0xa0, 0x41)), "\u3042A");
    assertThrows(() => new TextDecoder("utf-16be", { fatal: true }).decode(bytes(0x00)), TypeError);
  }],
  ["TextDecoder stream splits multi-byte sequences", () => {
    const td = new TextDecoder();
    const all = new TextEncoder().encode("a€😀b");
    let out = "";
    for (const ch of all) out += td.decode(bytes(ch), { stream: true });
    out += td.decode();
    assertEq(out, "a€😀b");
  }],
  ["TextDecoder stream BOM split and flush of incomplete tail", () => {
    const td = new TextDecoder();
    assertEq(td.decode(bytes(0xef, 0xbb), { stream: true }), "");
    assertEq(td.decode(bytes(0xbf, 0x41, 0xef, 0xbb, 0xbf), { stream: true }), "A\ufeff");
    assertEq(td.decode(bytes(0xe2, 0x82), { stream: true }), "");
    assertEq(td.decode(), "\ufffd");
    assertEq(td.decode(bytes(0xef, 0xbb, 0xbf, 0x42)), "B", "BOM stripped again after a reset");
  }],
  ["TextDecoder fatal in stream mode", () => {
    const td = new TextDecoder("utf-8", { fatal: true });
    assertEq(td.decode(bytes(0xf0, 0x9f), { stream: true }), "");
    assertThrows(() => td.decode(bytes(0x41)), TypeError);
    assertEq(td.decode(bytes(0x41)), "A", "usable after error");
  }],
  ["atob basics and forgiving whitespace/padding", () => {
    assertEq(atob("aGVsbG8="), "hello");
    assertEq(atob("aGVsbG8"), "hello");
    assertEq(atob(" aGV\tsb\nG8= "), "hello");
    assertEq(atob(""), "");
    assertEq(atob("/w=="), "\xff");
    assertEq(atob("YQ"), "a");
  }],
  ["atob rejects invalid input with InvalidCharacterError", () => {
    for (const bad of ["a", "abcde", "ab=c", "a===", "*abc", "aGVsbG8==", "ab\u00ffc"]) {
      const e = assertThrows(() => atob(bad), DOMException, "InvalidCharacterError");
      assertEq(e.code, 5);
    }
    assertThrows(() => atob(), TypeError);
  }],
  ["btoa", () => {
    assertEq(btoa("hello"), "aGVsbG8="); assertEq(btoa(""), ""); assertEq(btoa("a"), "YQ=="); assertEq(btoa("ab"), "YWI=");
    assertEq(btoa("\xff\xfe"), "//4=");
    assertThrows(() => btoa("€"), DOMException, "InvalidCharacterError");
  }],
  ["atob/btoa round-trip all bytes", () => {
    let s = ""; for (let i = 0; i < 256; i++) s += String.fromCharCode(i);
    assertEq(atob(btoa(s)), s);
  }],

  // ---------------- URL ----------------
  ["URL components", () => {
    const u = new URL("https://user:pw@example.com:8080/a/b?x=1&y=2#frag");
    assertEq(u.href, "https://user:pw@example.com:8080/a/b?x=1&y=2#frag");
    assertEq(u.origin, "https://example.com:8080"); assertEq(u.protocol, "https:");
    assertEq(u.username, "user"); assertEq(u.password, "pw"); assertEq(u.host, "example.com:8080");
    assertEq(u.hostname, "example.com"); assertEq(u.port, "8080"); assertEq(u.pathname, "/a/b");
    assertEq(u.search, "?x=1&y=2"); assertEq(u.hash, "#frag");
  }],
  ["URL with base and normalisation", () => {
    assertEq(new URL("../c?q", "http://h/a/b/").href, "http://h/a/c?q");
    assertEq(new URL("HTTP://EXAMPLE.com:80/%7e/./x").href, "http://example.com/%7e/x");
    assertEq(new URL("/p", new URL("https://h/x")).href, "https://h/p");
  }],
  ["URL invalid input throws TypeError", () => {
    assertThrows(() => new URL("not a url"), TypeError);
    assertThrows(() => new URL("/relative"), TypeError);
    assertThrows(() => new URL("http://[::1"), TypeError);
    assertThrows(() => new URL(), TypeError);
  }],
  ["URL.canParse and URL.parse", () => {
    assertEq(URL.canParse("https://a"), true); assertEq(URL.canParse("nope"), false); assertEq(URL.canParse("/x", "https://a"), true);
    assertEq(URL.parse("nope"), null);
    const u = URL.parse("/x", "https://a/");
    assert(u instanceof URL, "instance"); assertEq(u.href, "https://a/x");
  }],
  ["URL setters", () => {
    const u = new URL("http://a.com/p");
    u.pathname = "/q r"; assertEq(u.pathname, "/q%20r");
    u.hash = "h"; assertEq(u.hash, "#h");
    u.port = "8080"; assertEq(u.host, "a.com:8080");
    u.port = "80"; assertEq(u.port, "");
    u.hostname = "b.org"; assertEq(u.host, "b.org");
    u.protocol = "https"; assertEq(u.protocol, "https:");
    u.username = "me"; assertEq(u.href, "https://me@b.org/q%20r#h");
    u.hash = ""; assertEq(u.href, "https://me@b.org/q%20r");
  }],
  ["URL href setter validates", () => {
    const u = new URL("http://a/");
    u.href = "https://b/c?d=1";
    assertEq(u.host, "b"); assertEq(u.searchParams.get("d"), "1");
    assertThrows(() => { u.href = "::bad"; }, TypeError);
    assertEq(u.href, "https://b/c?d=1");
  }],
  ["URL searchParams stay in sync both ways", () => {
    const u = new URL("http://h/?a=1&b=2");
    const sp = u.searchParams;
    assertEq(sp.get("a"), "1");
    sp.append("c", "x y");
    assertEq(u.search, "?a=1&b=2&c=x+y");
    u.search = "?z=9";
    assertEq(u.searchParams, sp, "same object"); assertEq(sp.get("z"), "9"); assertEq(sp.has("a"), false);
    sp.delete("z");
    assertEq(u.search, ""); assertEq(u.href, "http://h/");
  }],
  ["URL toString/toJSON", () => {
    const u = new URL("http://h/x");
    assertEq(String(u), "http://h/x"); assertEq(u.toJSON(), "http://h/x");
    assertEq(JSON.stringify({ u }), '{"u":"http://h/x"}');
    assertEq(Object.prototype.toString.call(u), "[object URL]");
  }],
  ["URLSearchParams parsing edge cases", () => {
    const p = new URLSearchParams("a=b+c&%20d=%zz&&e&=f&g=%F0%9F%98%80&h=%ff");
    assertEq(p.get(" d"), "%zz"); assertEq(p.get("a"), "b c"); assertEq(p.get("e"), "");
    assertEq(p.get(""), "f"); assertEq(p.get("g"), "😀"); assertEq(p.get("h"), "\ufffd"); assertEq(p.size, 6);
    assertEq(new URLSearchParams("?x=1").get("x"), "1");
    assertEq(new URLSearchParams("??x=1").get("?x"), "1");
  }],
  ["URLSearchParams from pairs and records", () => {
    const a = new URLSearchParams([["x", "1"], ["x", "2"], ["y", 3]]);
    assertJson(a.getAll("x"), ["1", "2"]); assertEq(a.get("y"), "3");
    const b = new URLSearchParams({ k: "v", n: 1 });
    assertEq(b.toString(), "k=v&n=1");
    const c = new URLSearchParams(a);
    a.append("z", "0");
    assertEq(c.toString(), "x=1&x=2&y=3");
    assertThrows(() => new URLSearchParams([["a", "b", "c"]]), TypeError);
    assertThrows(() => new URLSearchParams([["a"]]), TypeError);
    assertThrows(() => new URLSearchParams([1]), TypeError);
  }],
  ["URLSearchParams append/get/getAll/has/delete with value", () => {
    const p = new URLSearchParams();
    p.append("a", "1"); p.append("a", "2"); p.append("b", "3");
    assertEq(p.get("a"), "1"); assertEq(p.get("missing"), null);
    assertEq(p.has("a", "2"), true); assertEq(p.has("a", "3"), false);
    p.delete("a", "1");
    assertJson(p.getAll("a"), ["2"]);
    p.delete("a");
    assertEq(p.toString(), "b=3");
    assertThrows(() => p.append("only-one"), TypeError);
  }],
  ["URLSearchParams set", () => {
    const p = new URLSearchParams("a=1&b=2&a=3");
    p.set("a", "x");
    assertEq(p.toString(), "a=x&b=2");
    p.set("c", "y");
    assertEq(p.toString(), "a=x&b=2&c=y");
  }],
  ["URLSearchParams sort is stable by code units", () => {
    const p = new URLSearchParams("z=1&a=2&z=0&a=1&\uffff=x&\u{1F600}=y");
    p.sort();
    assertJson([...p.keys()], ["a", "a", "z", "z", "\u{1F600}", "\uffff"]);
    assertJson(p.getAll("a"), ["2", "1"]);
  }],
  ["URLSearchParams serialization percent-encoding", () => {
    const p = new URLSearchParams();
    p.append("a b", "c+d&e=f");
    p.append("*-._", "~!'()é😀");
    assertEq(p.toString(), "a+b=c%2Bd%26e%3Df&*-._=%7E%21%27%28%29%C3%A9%F0%9F%98%80");
    assertEq(new URLSearchParams(p.toString()).get("*-._"), "~!'()é😀");
    p.append("\ud800", "x");
    assert(p.toString().endsWith("&%EF%BF%BD=x"), "lone surrogate becomes U+FFFD");
  }],
  ["URLSearchParams iteration and forEach", () => {
    const p = new URLSearchParams("a=1&b=2");
    assertJson([...p], [["a", "1"], ["b", "2"]]);
    assertJson([...p.keys()], ["a", "b"]); assertJson([...p.values()], ["1", "2"]); assertJson([...p.entries()], [["a", "1"], ["b", "2"]]);
    const seen = [];
    p.forEach((v, k, o) => { seen.push(k + v); assertEq(o, p); });
    assertJson(seen, ["a1", "b2"]);
    assertEq(Object.prototype.toString.call(p.keys()), "[object URLSearchParams Iterator]");
  }],
  ["URLSearchParams iterator observes mutation", () => {
    const p = new URLSearchParams("a=1");
    const it = p.keys();
    assertEq(it.next().value, "a");
    p.append("b", "2");
    assertEq(it.next().value, "b");
    assertEq(it.next().done, true);
  }],

  // ---------------- timers ----------------
  ["setTimeout ids are distinct positive integers", () => {
    const a = setTimeout(() => {}, 10), b = setTimeout(() => {}, 10);
    assert(Number.isInteger(a) && a > 0 && Number.isInteger(b) && b > 0 && a !== b, "ids");
    clearTimeout(a); clearTimeout(b);
  }],
  ["setTimeout fires with extra arguments", async () => {
    const got = await drive(new Promise((r) => setTimeout((x, y) => r([x, y]), 5, "a", 2)));
    assertJson(got, ["a", 2]);
  }],
  ["clearTimeout prevents firing", async () => {
    let fired = false;
    const id = setTimeout(() => { fired = true; }, 1);
    clearTimeout(id);
    await sleep(5);
    assertEq(fired, false);
    clearTimeout(undefined); clearTimeout(123456789);
  }],
  ["timers fire in due order, ties by creation", async () => {
    const order = [];
    setTimeout(() => order.push("late"), 8);
    setTimeout(() => order.push("a"), 0);
    setTimeout(() => order.push("b"), 0);
    setTimeout(() => order.push("c"), -5);
    await sleep(15);
    assertJson(order, ["a", "b", "c", "late"]);
  }],
  ["setInterval repeats until cleared", async () => {
    let n = 0;
    const done = new Promise((r) => { const id = setInterval(() => { if (++n === 3) { clearInterval(id); r(); } }, 1); });
    await drive(done);
    await sleep(5);
    assertEq(n, 3);
  }],
  ["timer driver next/run/clear", () => {
    if (!timerDriver) return; // host-internal: not reachable from inside the guest
    const __kvmjsTimers = timerDriver;
    __kvmjsTimers.clear();
    assertEq(__kvmjsTimers.next(), -1);
    assertEq(__kvmjsTimers.run(), 0);
    let ran = 0;
    setTimeout(() => ran++, 0);
    setTimeout(() => ran++, 100000);
    assertEq(__kvmjsTimers.next(), 0);
    assertEq(__kvmjsTimers.run(), 1);
    assertEq(ran, 1);
    const wait = __kvmjsTimers.next();
    assert(wait > 90000 && wait <= 100000, `next() ${wait}`);
    __kvmjsTimers.clear();
    assertEq(__kvmjsTimers.next(), -1);
    assertEq(Object.keys(globalThis).includes("__kvmjsTimers"), false, "non-enumerable");
  }],
  ["timer callback errors are reported and do not stop other timers", async () => {
    const log = globalThis.__kvmjsTestLog;
    const start = Array.isArray(log) ? log.length : 0;
    setTimeout(() => { throw new Error("timer boom"); }, 0);
    await drive(new Promise((r) => setTimeout(r, 0)));
    if (Array.isArray(log)) assert(log.slice(start).some(([l, m]) => l === 3 && m.includes("timer boom")), "reported");
  }],
  ["setTimeout rejects non-function handlers", () => {
    assertThrows(() => setTimeout("1+1", 0), TypeError);
    assertThrows(() => setTimeout(), TypeError);
  }],
  ["queueMicrotask ordering and errors", async () => {
    const order = [];
    queueMicrotask(() => order.push(1));
    Promise.resolve().then(() => order.push(2));
    queueMicrotask(() => order.push(3));
    await ticks(3);
    assertJson(order, [1, 2, 3]);
    assertThrows(() => queueMicrotask(1), TypeError);
    const lines = captureLog(() => queueMicrotask(() => { throw new Error("mt boom"); }));
    await ticks(2);
    if (lines !== null) assert(globalThis.__kvmjsTestLog.length >= 0);
  }],

  // ---------------- abort ----------------
  ["AbortController.abort sets reason and fires once", () => {
    const c = new AbortController(); const s = c.signal; let events = 0, handler = 0;
    assertEq(s.aborted, false); assertEq(s.reason, undefined);
    s.addEventListener("abort", (e) => { events++; assertEq(e.type, "abort"); assertEq(e.target, s); });
    s.onabort = () => handler++;
    c.abort(); c.abort("again");
    assertEq(s.aborted, true); assertEq(events, 1); assertEq(handler, 1);
    assert(s.reason instanceof DOMException, "DOMException"); assertEq(s.reason.name, "AbortError"); assertEq(s.reason.code, 20);
  }],
  ["abort with custom reason and throwIfAborted", () => {
    const c = new AbortController();
    c.signal.throwIfAborted();
    const reason = { why: "x" };
    c.abort(reason);
    assertEq(c.signal.reason, reason);
    try { c.signal.throwIfAborted(); throw new Error("no throw"); } catch (e) { assertEq(e, reason); }
  }],
  ["onabort getter/setter", () => {
    const c = new AbortController(); let n = 0; const f = () => n++;
    c.signal.onabort = f; assertEq(c.signal.onabort, f);
    c.signal.onabort = null; assertEq(c.signal.onabort, null);
    c.abort(); assertEq(n, 0);
  }],
  ["AbortSignal.abort static", () => {
    const s = AbortSignal.abort();
    assertEq(s.aborted, true); assertEq(s.reason.name, "AbortError");
    assertEq(AbortSignal.abort(5).reason, 5);
    assertThrows(() => new AbortSignal(), TypeError);
  }],
  ["AbortSignal.timeout fires TimeoutError", async () => {
    const s = AbortSignal.timeout(5);
    assertEq(s.aborted, false);
    await drive(new Promise((r) => s.addEventListener("abort", r)));
    assertEq(s.aborted, true);
    assert(s.reason instanceof DOMException, "DOMException"); assertEq(s.reason.name, "TimeoutError"); assertEq(s.reason.code, 23);
    assertThrows(() => AbortSignal.timeout(-1), TypeError);
    assertThrows(() => AbortSignal.timeout(NaN), TypeError);
  }],
  ["AbortSignal.any follows its sources", () => {
    const a = new AbortController(), b = new AbortController();
    const any = AbortSignal.any([a.signal, b.signal]);
    const nested = AbortSignal.any([any]);
    let fired = 0;
    any.addEventListener("abort", () => fired++);
    nested.addEventListener("abort", () => fired++);
    b.abort("b!");
    assertEq(any.aborted, true); assertEq(any.reason, "b!"); assertEq(nested.reason, "b!"); assertEq(fired, 2);
    a.abort("a!");
    assertEq(any.reason, "b!"); assertEq(fired, 2);
  }],
  ["AbortSignal.any with an aborted input and validation", () => {
    const s = AbortSignal.any([new AbortController().signal, AbortSignal.abort("first")]);
    assertEq(s.aborted, true); assertEq(s.reason, "first");
    assertEq(AbortSignal.any([]).aborted, false);
    assertThrows(() => AbortSignal.any([{}]), TypeError);
  }],
  ["AbortSignal is an EventTarget with tags", () => {
    const s = new AbortController().signal;
    assert(s instanceof EventTarget, "EventTarget");
    assertEq(Object.prototype.toString.call(s), "[object AbortSignal]");
    assertEq(Object.prototype.toString.call(new AbortController()), "[object AbortController]");
  }],

  // ---------------- Blob / File ----------------
  ["Blob from strings, size and type", async () => {
    const b = new Blob(["héllo", " ", "world"], { type: "Text/Plain" });
    assertEq(b.size, 12); assertEq(b.type, "text/plain");
    assertEq(await b.text(), "héllo world");
    assertEq(new Blob().size, 0); assertEq(new Blob().type, "");
    assertEq(new Blob([], { type: "a\u00e9" }).type, "");
    assertEq(new Blob([], { type: "a\tb" }).type, "");
  }],
  ["Blob from buffers, views and blobs", async () => {
    const u8 = bytes(1, 2, 3, 4);
    const b = new Blob([u8.buffer, new DataView(u8.buffer, 1, 2), new Blob([bytes(9)]), u8.subarray(3)]);
    assert(sameBytes(await b.bytes(), bytes(1, 2, 3, 4, 2, 3, 9, 4)), "bytes");
    u8[0] = 99;
    assertEq((await b.bytes())[0], 1, "copied at construction");
    assertThrows(() => new Blob("not a sequence"), TypeError);
    assertThrows(() => new Blob([], { endings: "weird" }), TypeError);
  }],
  ["Blob.slice", async () => {
    const b = new Blob(["0123456789"], { type: "x/y" });
    assertEq(await b.slice(2, 5).text(), "234");
    assertEq(await b.slice(-3).text(), "789");
    assertEq(await b.slice(-3, -1).text(), "78");
    assertEq(await b.slice(5, 2).text(), "");
    assertEq(await b.slice(0, 100).text(), "0123456789");
    assertEq(b.slice(1, 2).type, "");
    assertEq(b.slice(1, 2, "A/B").type, "a/b");
    assertEq(await b.slice(2, 8).slice(1, -1).text(), "3456");
  }],
  ["Blob arrayBuffer/bytes return fresh copies", async () => {
    const b = new Blob(["abc"]);
    const ab = await b.arrayBuffer();
    assert(ab instanceof ArrayBuffer, "ArrayBuffer"); assertEq(ab.byteLength, 3);
    new Uint8Array(ab)[0] = 0;
    assertEq(await b.text(), "abc");
    const u = await b.bytes();
    assert(u instanceof Uint8Array && u.length === 3, "bytes");
  }],
  ["Blob.stream", async () => {
    const big = new Uint8Array(150000).map((_, i) => i & 255);
    const chunks = await readAll(new Blob([big]).stream());
    assert(chunks.length > 1, "several chunks");
    const joined = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
    let off = 0; for (const c of chunks) { joined.set(c, off); off += c.length; }
    assert(sameBytes(joined, big), "content");
    assertEq((await readAll(new Blob([]).stream())).length, 0);
  }],
  ["Blob lone surrogate becomes U+FFFD", async () => {
    assert(sameBytes(await new Blob(["\udc00"]).bytes(), bytes(0xef, 0xbf, 0xbd)), "bytes");
  }],
  ["File name and lastModified", async () => {
    const f = new File(["data"], "a.txt", { type: "text/plain", lastModified: 42 });
    assertEq(f.name, "a.txt"); assertEq(f.lastModified, 42); assertEq(f.type, "text/plain"); assertEq(f.size, 4);
    assert(f instanceof Blob, "is a Blob"); assertEq(Object.prototype.toString.call(f), "[object File]");
    assertEq(await f.text(), "data");
    const g = new File([], "b");
    assert(Math.abs(g.lastModified - Date.now()) < 5000, "defaults to now");
    assertThrows(() => new File([]), TypeError);
    assertEq(Object.prototype.toString.call(f.slice()), "[object Blob]");
  }],

];
