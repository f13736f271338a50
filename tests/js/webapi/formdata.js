// Web API conformance tests: FormData, multipart/form-data and urlencoded bodies.
import { assert, assertEq, assertJson, assertThrows, assertRejects, bytes, sameBytes } from "./helpers.js";

const entriesOf = (fd) => [...fd].map(([k, v]) => [k, typeof v === "string" ? v : `File(${v.name},${v.type},${v.size})`]);
const multipart = (boundary, body) => new Response(body, { headers: { "content-type": `multipart/form-data; boundary=${boundary}` } });

export const tests = [
  ["FormData append/get/getAll/has/set/delete", async () => {
    const fd = new FormData();
    assertEq(Object.prototype.toString.call(fd), "[object FormData]");
    fd.append("a", "1");
    fd.append("b", "2");
    fd.append("a", "3");
    assertEq(fd.get("a"), "1");
    assertJson(fd.getAll("a"), ["1", "3"]);
    assertEq(fd.get("zz"), null);
    assertJson(fd.getAll("zz"), []);
    assert(fd.has("b") && !fd.has("c"), "has");
    fd.set("a", "4");
    assertJson(entriesOf(fd), [["a", "4"], ["b", "2"]], "set replaces the first and drops the rest");
    fd.set("c", 5);
    assertJson(entriesOf(fd), [["a", "4"], ["b", "2"], ["c", "5"]], "set appends a new name");
    fd.delete("b");
    assertJson([...fd.keys()], ["a", "c"]);
    assertJson([...fd.values()], ["4", "5"]);
    const seen = [];
    fd.forEach(function (v, k, obj) { seen.push([k, v, obj === fd, this.t]); }, { t: 1 });
    assertJson(seen, [["a", "4", true, 1], ["c", "5", true, 1]]);
    assertEq(FormData.prototype[Symbol.iterator], FormData.prototype.entries);
    assertEq(Object.prototype.toString.call(fd.entries()), "[object FormData Iterator]");
    assertEq(FormData.prototype.append.length, 2);
    assertEq(FormData.prototype.get.length, 1);
  }],
  ["FormData iterators see later changes and USVString conversion", async () => {
    const fd = new FormData();
    fd.append("x", "1");
    const it = fd.keys();
    fd.append("y", "2");
    assertJson([...it], ["x", "y"]);
    fd.append("\ud800lone", "v\udc00");
    assertJson([...fd].at(-1), ["\ufffdlone", "v\ufffd"]);
    fd.append({ toString: () => "obj" }, null);
    assertEq(fd.get("obj"), "null");
  }],
  ["FormData Blob and File entries", async () => {
    const fd = new FormData();
    fd.append("blob", new Blob(["abc"], { type: "text/x-a" }));
    const b = fd.get("blob");
    assert(b instanceof File, "a Blob becomes a File");
    assertEq(b.name, "blob");
    assertEq(b.type, "text/x-a");
    assertEq(await b.text(), "abc");
    const f = new File(["hello"], "orig.txt", { type: "text/plain", lastModified: 42 });
    fd.append("file", f);
    assertEq(fd.get("file"), f, "a File without a filename is kept as is");
    fd.set("renamed", f, "new.txt");
    const r = fd.get("renamed");
    assert(r !== f && r instanceof File, "a new File");
    assertEq(r.name, "new.txt");
    assertEq(r.type, "text/plain");
    assertEq(r.lastModified, 42);
    assertEq(await r.text(), "hello");
  }],
  ["FormData argument errors", async () => {
    assertThrows(() => new FormData({}), TypeError);
    assertThrows(() => new FormData(null), TypeError);
    assertThrows(() => new FormData(undefined, {}), TypeError);
    assertEq([...new FormData(undefined, null)].length, 0);
    const fd = new FormData();
    assertThrows(() => fd.append("a"), TypeError);
    assertThrows(() => fd.append("a", "b", "c"), TypeError);
    assertThrows(() => fd.set("a", "b", undefined), TypeError);
    assertThrows(() => fd.get(), TypeError);
    assertThrows(() => FormData.prototype.get.call({}, "a"), TypeError);
    assertThrows(() => structuredClone(new FormData()), DOMException, "DataCloneError");
  }],
  ["Response(FormData) round trip through multipart/form-data", async () => {
    const fd = new FormData();
    fd.append("name", "value");
    fd.append("empty", "");
    fd.append("text", "caf\u00e9 \u{1f600}");
    fd.append("upload", new File([bytes(0, 1, 2, 255, 13, 10)], "data.bin", { type: "application/x-thing" }));
    fd.append("untyped", new File(["plain"], "notes.txt"));
    fd.append("name", "second");
    const res = new Response(fd);
    const ct = res.headers.get("content-type");
    assert(/^multipart\/form-data; boundary=[-0-9a-z]+$/.test(ct), `content-type ${ct}`);
    const back = await res.formData();
    assertEq(res.bodyUsed, true);
    assert(back instanceof FormData, "a FormData");
    assertJson(entriesOf(back), [
      ["name", "value"], ["empty", ""], ["text", "caf\u00e9 \u{1f600}"],
      ["upload", "File(data.bin,application/x-thing,6)"],
      ["untyped", "File(notes.txt,application/octet-stream,5)"], ["name", "second"],
    ]);
    assert(sameBytes(await back.get("upload").bytes(), bytes(0, 1, 2, 255, 13, 10)), "file bytes");
  }],
  ["Request(FormData) sets the content type and serializes as HTML says", async () => {
    const fd = new FormData();
    fd.append("a", "x\ny\rz\r\n");
    fd.append("f", new Blob(["B"]), "a.txt");
    const req = new Request("http://h/", { method: "POST", body: fd });
    fd.append("late", "not in the body");
    const boundary = req.headers.get("content-type").split("boundary=")[1];
    assertEq(await req.clone().text(),
      `--${boundary}\r\nContent-Disposition: form-data; name="a"\r\n\r\nx\r\ny\r\nz\r\n\r\n` +
      `--${boundary}\r\nContent-Disposition: form-data; name="f"; filename="a.txt"\r\n` +
      `Content-Type: application/octet-stream\r\n\r\nB\r\n--${boundary}--\r\n`);
    assertJson(entriesOf(await req.formData()), [["a", "x\r\ny\r\nz\r\n"], ["f", "File(a.txt,application/octet-stream,1)"]]);
    const own = new Request("http://h/", { method: "POST", body: new FormData(), headers: { "content-type": "text/x" } });
    assertEq(own.headers.get("content-type"), "text/x", "an explicit Content-Type wins");
    assertEq(await new Response(new FormData()).text().then((t) => /^--[-0-9a-z]+--\r\n$/.test(t)), true, "empty form");
  }],
  ["multipart/form-data names with quotes and newlines are escaped", async () => {
    const fd = new FormData();
    fd.append('a "quoted"\nname', "v");
    fd.append("file", new Blob(["x"]), 'evil"\r\nname.txt');
    const res = new Response(fd);
    const text = await res.clone().text();
    assert(text.includes('name="a %22quoted%22%0D%0Aname"'), text);
    assert(text.includes('filename="evil%22%0D%0Aname.txt"'), text);
    const back = await res.formData();
    assertJson([...back.keys()], ['a "quoted"\r\nname', "file"]);
    assertEq(back.get("file").name, 'evil"\r\nname.txt');
  }],
  ["multipart/form-data parsing of a hand-written body", async () => {
    const body = "preamble\r\n--XyZ\r\n" +
      "content-disposition: form-data; name=\"a%22b\"\r\n\r\none\r\n" +
      "--XyZ\r\nContent-Disposition: form-data; name=\"up\"; filename=\"r\u00e9sum\u00e9.txt\"\r\nX-Other: 1\r\n\r\n--XyZ-ish\r\n" +
      "--XyZ\r\nContent-Disposition: form-data; name=\"img\"; filename=\"p.png\"\r\nContent-Type: image/PNG\r\n\r\n\r\n" +
      "--XyZ--\r\nepilogue";
    const fd = await multipart('"XyZ"', body).formData();
    assertJson(entriesOf(fd), [["a\"b", "one"], ["up", "File(r\u00e9sum\u00e9.txt,text/plain,9)"], ["img", "File(p.png,image/png,0)"]]);
    assertEq(await fd.get("up").text(), "--XyZ-ish");
    // Header names are case-insensitive, as is the MIME type.
    const lower = await new Response("--b\r\ncontent-disposition: form-data; name=\"k\"\r\n\r\nv\r\n--b--\r\n",
      { headers: { "Content-Type": "Multipart/Form-Data; Charset=x; Boundary=b" } }).formData();
    assertEq(lower.get("k"), "v");
  }],
  ["urlencoded bodies parse into FormData", async () => {
    const req = new Request("http://h/", {
      method: "POST", body: "a=1&b=x+y%20z&&a=%E2%82%AC&c&=d&%zz=%",
      headers: { "content-type": "application/x-www-form-urlencoded; charset=windows-1252" },
    });
    assertJson(entriesOf(await req.formData()), [["a", "1"], ["b", "x y z"], ["a", "\u20ac"], ["c", ""], ["", "d"], ["%zz", "%"]]);
    const fromParams = await new Response(new URLSearchParams({ q: "a b&c", "\u00e9": "1" })).formData();
    assertJson(entriesOf(fromParams), [["q", "a b&c"], ["\u00e9", "1"]]);
    assertEq((await new Response(null, { headers: { "content-type": "application/x-www-form-urlencoded" } }).formData()).has("x"), false);
    // The last valid MIME type of a combined header counts.
    const combined = new Response("k=v", { headers: [["content-type", "text/plain"], ["content-type", "application/x-www-form-urlencoded"]] });
    assertEq((await combined.formData()).get("k"), "v");
  }],
  ["formData() errors are TypeErrors", async () => {
    const plain = new Response("a=b");
    await assertRejects(plain.formData(), TypeError);
    assertEq(plain.bodyUsed, true, "the body was read before the type was checked");
    await assertRejects(new Response("x", { headers: { "content-type": "application/json" } }).formData(), TypeError);
    await assertRejects(new Response("a=b", { headers: { "content-type": "multipart/form-data" } }).formData(), TypeError, undefined);
    await assertRejects(multipart("b", "").formData(), TypeError);
    await assertRejects(multipart("b", "--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nno end").formData(), TypeError);
    await assertRejects(multipart("b", "--b\r\nContent-Type: text/plain\r\n\r\nv\r\n--b--\r\n").formData(), TypeError);
    await assertRejects(multipart("b", "--b\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\nv\r\n--b--\r\n").formData(), TypeError);
    await assertRejects(multipart("b", "--b--junk").formData(), TypeError);
    const used = new Response(new FormData());
    await used.text();
    await assertRejects(used.formData(), TypeError);
  }],
];
