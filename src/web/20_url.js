// URL and URLSearchParams (URL Standard). Parsing itself is native; the
// application/x-www-form-urlencoded parser and serializer live here.
(() => {
  "use strict";
  const native = globalThis.__native;
  const internal = globalThis.__kvmjsInternal;
  const { defineGlobal, requireArgs, tag, toUSVString, definePairIterable } = internal;

  // Indexes into the arrays returned by native.urlParse / native.urlSet.
  const HREF = 0, ORIGIN = 1, PROTOCOL = 2, USERNAME = 3, PASSWORD = 4, HOST = 5, HOSTNAME = 6,
    PORT = 7, PATHNAME = 8, SEARCH = 9, HASH = 10;

  const HEX = "0123456789ABCDEF";
  // application/x-www-form-urlencoded percent-encode set leaves only these ASCII bytes alone.
  const FORM_SAFE = new Uint8Array(128);
  for (const c of "*-._0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") FORM_SAFE[c.charCodeAt(0)] = 1;

  function pctByte(b) { return "%" + HEX[b >> 4] + HEX[b & 15]; }

  function formEncode(s) {
    let out = "";
    let start = 0;
    const n = s.length;
    for (let i = 0; i < n; i++) {
      let c = s.charCodeAt(i);
      if (c < 0x80 && FORM_SAFE[c]) continue;
      if (i > start) out += s.slice(start, i);
      if (c < 0x80) {
        out += c === 0x20 ? "+" : pctByte(c);
      } else {
        if (c >= 0xd800 && c <= 0xdfff) {
          const d = i + 1 < n ? s.charCodeAt(i + 1) : 0;
          if (c <= 0xdbff && d >= 0xdc00 && d <= 0xdfff) { c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00); i++; } else c = 0xfffd;
        }
        if (c < 0x800) {
          out += pctByte(0xc0 | (c >> 6)) + pctByte(0x80 | (c & 63));
        } else if (c < 0x10000) {
          out += pctByte(0xe0 | (c >> 12)) + pctByte(0x80 | ((c >> 6) & 63)) + pctByte(0x80 | (c & 63));
        } else {
          out += pctByte(0xf0 | (c >> 18)) + pctByte(0x80 | ((c >> 12) & 63)) + pctByte(0x80 | ((c >> 6) & 63)) + pctByte(0x80 | (c & 63));
        }
      }
      start = i + 1;
    }
    return start === 0 ? s : out + s.slice(start);
  }

  function hexValue(b) {
    if (b >= 0x30 && b <= 0x39) return b - 0x30;
    if (b >= 0x41 && b <= 0x46) return b - 0x37;
    if (b >= 0x61 && b <= 0x66) return b - 0x57;
    return -1;
  }

  // Percent-decoding works on the UTF-8 bytes, then "UTF-8 decode without BOM" (non-fatal).
  function formDecode(s) {
    if (s.indexOf("+") !== -1) s = s.replace(/\+/g, " ");
    if (s.indexOf("%") === -1) return s;
    const bytes = native.utf8Encode(s);
    const out = new Uint8Array(bytes.length);
    let j = 0;
    for (let i = 0; i < bytes.length; i++) {
      const b = bytes[i];
      if (b === 0x25 && i + 2 < bytes.length) {
        const h = hexValue(bytes[i + 1]);
        const l = hexValue(bytes[i + 2]);
        if (h >= 0 && l >= 0) { out[j++] = (h << 4) | l; i += 2; continue; }
      }
      out[j++] = b;
    }
    return native.utf8Decode(out.subarray(0, j), false, true);
  }

  function formParse(input) {
    const list = [];
    if (input === "") return list;
    for (const seq of input.split("&")) {
      if (seq === "") continue;
      const eq = seq.indexOf("=");
      const name = eq === -1 ? seq : seq.slice(0, eq);
      const value = eq === -1 ? "" : seq.slice(eq + 1);
      list.push([formDecode(name), formDecode(value)]);
    }
    return list;
  }

  function formSerialize(list) {
    let out = "";
    for (let i = 0; i < list.length; i++) {
      if (i > 0) out += "&";
      out += formEncode(list[i][0]) + "=" + formEncode(list[i][1]);
    }
    return out;
  }

  function isIterableObject(v) {
    return v !== null && (typeof v === "object" || typeof v === "function");
  }

  let paramsList, setParamsList, attachParams, isParams;

  class URLSearchParams {
    #list = [];
    #onUpdate = null; // set when owned by a URL: pushes the serialization into its query

    constructor(init = "") {
      if (isIterableObject(init)) {
        const iter = init[Symbol.iterator];
        if (iter !== undefined && iter !== null) {
          if (typeof iter !== "function") throw new TypeError("URLSearchParams constructor: init[Symbol.iterator] is not a function.");
          for (const pair of { [Symbol.iterator]: () => iter.call(init) }) {
            if (!isIterableObject(pair) || typeof pair[Symbol.iterator] !== "function") {
              throw new TypeError("URLSearchParams constructor: each pair must be an iterable.");
            }
            const items = [...pair];
            if (items.length !== 2) throw new TypeError("URLSearchParams constructor: each pair must contain exactly two items.");
            this.#list.push([toUSVString(items[0]), toUSVString(items[1])]);
          }
        } else {
          // record<USVString, USVString>: own enumerable string keys, later duplicates win.
          const record = new Map();
          for (const key of Reflect.ownKeys(init)) {
            if (typeof key !== "string") continue;
            const desc = Reflect.getOwnPropertyDescriptor(init, key);
            if (desc === undefined || !desc.enumerable) continue;
            record.set(toUSVString(key), toUSVString(init[key]));
          }
          for (const entry of record) this.#list.push(entry);
        }
      } else {
        let s = toUSVString(init);
        if (s.charCodeAt(0) === 0x3f) s = s.slice(1);
        this.#list = formParse(s);
      }
    }

    static {
      paramsList = (p) => p.#list;
      setParamsList = (p, list) => { p.#list = list; };
      attachParams = (p, fn) => { p.#onUpdate = fn; };
      isParams = (p) => isIterableObject(p) && #list in p;
    }

    #update() {
      if (this.#onUpdate !== null) this.#onUpdate(formSerialize(this.#list));
    }

    get size() { return this.#list.length; }

    append(name, value) {
      requireArgs(arguments.length, 2, "URLSearchParams.append");
      this.#list.push([toUSVString(name), toUSVString(value)]);
      this.#update();
    }

    delete(name, value = undefined) {
      requireArgs(arguments.length, 1, "URLSearchParams.delete");
      name = toUSVString(name);
      if (value === undefined) {
        this.#list = this.#list.filter((p) => p[0] !== name);
      } else {
        value = toUSVString(value);
        this.#list = this.#list.filter((p) => p[0] !== name || p[1] !== value);
      }
      this.#update();
    }

    get(name) {
      requireArgs(arguments.length, 1, "URLSearchParams.get");
      name = toUSVString(name);
      for (const p of this.#list) if (p[0] === name) return p[1];
      return null;
    }

    getAll(name) {
      requireArgs(arguments.length, 1, "URLSearchParams.getAll");
      name = toUSVString(name);
      const out = [];
      for (const p of this.#list) if (p[0] === name) out.push(p[1]);
      return out;
    }

    has(name, value = undefined) {
      requireArgs(arguments.length, 1, "URLSearchParams.has");
      name = toUSVString(name);
      if (value === undefined) return this.#list.some((p) => p[0] === name);
      value = toUSVString(value);
      return this.#list.some((p) => p[0] === name && p[1] === value);
    }

    set(name, value) {
      requireArgs(arguments.length, 2, "URLSearchParams.set");
      name = toUSVString(name);
      value = toUSVString(value);
      let found = false;
      this.#list = this.#list.filter((p) => {
        if (p[0] !== name) return true;
        if (found) return false;
        found = true;
        p[1] = value;
        return true;
      });
      if (!found) this.#list.push([name, value]);
      this.#update();
    }

    sort() {
      // Array.prototype.sort is stable and compares strings by UTF-16 code units, as required.
      this.#list.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
      this.#update();
    }

    toString() {
      return formSerialize(this.#list);
    }

    [internal.inspectSymbol](depth, options, inspect) {
      return `URLSearchParams {${this.#list.length ? " " + this.#list.map(([k, v]) => `${inspect(k)} => ${inspect(v)}`).join(", ") + " " : ""}}`;
    }
  }
  tag(URLSearchParams, "URLSearchParams");
  definePairIterable(URLSearchParams, "URLSearchParams", (p) => paramsList(p));

  // Failure is null per the native contract; undefined is treated the same, defensively.
  function parse(url, base) {
    return base === undefined ? native.urlParse(url) : native.urlParse(url, base);
  }

  const FROM_RECORD = Symbol("URL from record");

  class URL {
    #r;             // the native 11-field record
    #params = null; // created on first access of searchParams

    constructor(url, base = undefined) {
      if (url === FROM_RECORD) { this.#r = base; return; }
      requireArgs(arguments.length, 1, "URL constructor");
      const input = toUSVString(url);
      const r = parse(input, base === undefined ? undefined : toUSVString(base));
      if (r == null) throw new TypeError(`Invalid URL: ${input}`);
      this.#r = r;
    }

    static canParse(url, base = undefined) {
      requireArgs(arguments.length, 1, "URL.canParse");
      return parse(toUSVString(url), base === undefined ? undefined : toUSVString(base)) != null;
    }

    static parse(url, base = undefined) {
      requireArgs(arguments.length, 1, "URL.parse");
      const r = parse(toUSVString(url), base === undefined ? undefined : toUSVString(base));
      return r == null ? null : new URL(FROM_RECORD, r);
    }

    #set(setter, value) {
      this.#r = native.urlSet(this.#r[HREF], setter, toUSVString(value));
    }

    #syncParams() {
      if (this.#params !== null) setParamsList(this.#params, formParse(this.#r[SEARCH].slice(1)));
    }

    get href() { return this.#r[HREF]; }
    set href(v) {
      const r = native.urlSet(this.#r[HREF], "href", toUSVString(v));
      if (r == null) throw new TypeError(`Invalid URL: ${v}`);
      this.#r = r;
      this.#syncParams();
    }
    get origin() { return this.#r[ORIGIN]; }
    get protocol() { return this.#r[PROTOCOL]; }
    set protocol(v) { this.#set("protocol", v); }
    get username() { return this.#r[USERNAME]; }
    set username(v) { this.#set("username", v); }
    get password() { return this.#r[PASSWORD]; }
    set password(v) { this.#set("password", v); }
    get host() { return this.#r[HOST]; }
    set host(v) { this.#set("host", v); }
    get hostname() { return this.#r[HOSTNAME]; }
    set hostname(v) { this.#set("hostname", v); }
    get port() { return this.#r[PORT]; }
    set port(v) { this.#set("port", v); }
    get pathname() { return this.#r[PATHNAME]; }
    set pathname(v) { this.#set("pathname", v); }
    get search() { return this.#r[SEARCH]; }
    set search(v) { this.#set("search", v); this.#syncParams(); }
    get hash() { return this.#r[HASH]; }
    set hash(v) { this.#set("hash", v); }

    get searchParams() {
      if (this.#params === null) {
        const p = new URLSearchParams();
        setParamsList(p, formParse(this.#r[SEARCH].slice(1)));
        // URLSearchParams "update steps": an empty serialization clears the query entirely,
        // which the native search setter does for "".
        attachParams(p, (serialized) => { this.#r = native.urlSet(this.#r[HREF], "search", serialized); });
        this.#params = p;
      }
      return this.#params;
    }

    toString() { return this.#r[HREF]; }
    toJSON() { return this.#r[HREF]; }

    [internal.inspectSymbol](depth, options, inspect) {
      const r = this.#r;
      return `URL ${inspect({
        href: r[HREF], origin: r[ORIGIN], protocol: r[PROTOCOL], username: r[USERNAME], password: r[PASSWORD],
        host: r[HOST], hostname: r[HOSTNAME], port: r[PORT], pathname: r[PATHNAME], search: r[SEARCH], hash: r[HASH],
      })}`;
    }
  }
  tag(URL, "URL");
  // DEVIATION: URL.createObjectURL / revokeObjectURL are not provided (no blob: URL store).

  Object.assign(internal, { URL, URLSearchParams, isURLSearchParams: isParams, formSerialize, paramsList });
  defineGlobal("URL", URL);
  defineGlobal("URLSearchParams", URLSearchParams);
})();
