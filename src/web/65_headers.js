// Headers (Fetch Standard).
(() => {
  "use strict";
  const internal = globalThis.__kvmjsInternal;
  const { defineGlobal, requireArgs, tag, toDOMString, definePairIterable, isPlainArray } = internal;
  // Names and values are ByteStrings: characters above U+00FF are rejected by the name
  // (token) and value checks below, so a plain string conversion is enough here.
  const str = (v) => (typeof v === "string" ? v : toDOMString(v));

  const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
  const HTTP_WHITESPACE_EDGES = /^[\t\n\r ]+|[\t\n\r ]+$/g;
  const FORBIDDEN_VALUE_CHARS = /[\0\r\n\u0100-\uffff]/;

  function checkName(name) {
    if (!TOKEN.test(name)) throw new TypeError(`Invalid header name: "${name}".`);
  }
  const isHttpWhitespace = (c) => c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;
  function normalizeValue(value) {
    const n = value.length;
    const v = n > 0 && (isHttpWhitespace(value.charCodeAt(0)) || isHttpWhitespace(value.charCodeAt(n - 1)))
      ? value.replace(HTTP_WHITESPACE_EDGES, "") : value;
    if (FORBIDDEN_VALUE_CHARS.test(v)) throw new TypeError(`Invalid header value: "${v}".`);
    return v;
  }

  function isObject(v) {
    return v !== null && (typeof v === "object" || typeof v === "function");
  }

  let isHeaders, headerList, setGuard, getGuard, appendRaw, fillHeaders, sortedOf;

  // DEVIATION: like other server runtimes, no forbidden request/response header names are
  // filtered; the "request"/"response" guards behave like "none". Only "immutable" is enforced.
  class Headers {
    #list = [];      // [lowercased name, value] in insertion order
    #guard = "none";
    #sorted = null;  // cached "sort and combine" result, dropped on every mutation

    constructor(init = undefined) {
      if (init !== undefined) this.#fill(init);
    }

    static {
      isHeaders = (h) => isObject(h) && #list in h;
      headerList = (h) => h.#list;
      setGuard = (h, g) => { h.#guard = g; };
      getGuard = (h) => h.#guard;
      appendRaw = (h, name, value) => { h.#list.push([name, value]); h.#sorted = null; };
      fillHeaders = (h, init) => h.#fill(init);
      sortedOf = (h) => h.#sortedList();
    }

    #fill(init) {
      if (!isObject(init)) {
        throw new TypeError("Headers: init must be a record or a sequence of [name, value] pairs.");
      }
      if (#list in init && init[Symbol.iterator] === Headers.prototype[Symbol.iterator]) {
        // Same result as iterating, minus re-validation.
        for (const [n, v] of init.#list) this.#appendChecked(n, v);
        return;
      }
      if (isPlainArray(init)) {
        for (let i = 0; i < init.length; i++) {
          const pair = init[i];
          if (isPlainArray(pair)) {
            if (pair.length !== 2) throw new TypeError("Headers: each header pair must contain exactly two items.");
            this.#append(str(pair[0]), str(pair[1]));
          } else {
            this.#appendPair(pair);
          }
        }
        return;
      }
      const iter = init[Symbol.iterator];
      if (iter !== undefined && iter !== null) {
        if (typeof iter !== "function") throw new TypeError("Headers: init[Symbol.iterator] is not a function.");
        for (const pair of { [Symbol.iterator]: () => iter.call(init) }) this.#appendPair(pair);
        return;
      }
      for (const key of Reflect.ownKeys(init)) {
        if (typeof key !== "string") continue;
        const desc = Reflect.getOwnPropertyDescriptor(init, key);
        if (desc === undefined || !desc.enumerable) continue;
        this.#append(str(key), str(init[key]));
      }
    }

    #appendPair(pair) {
      if (!isObject(pair) || typeof pair[Symbol.iterator] !== "function") throw new TypeError("Headers: each header must be a [name, value] pair.");
      const items = [...pair];
      if (items.length !== 2) throw new TypeError("Headers: each header pair must contain exactly two items.");
      this.#append(str(items[0]), str(items[1]));
    }

    #appendChecked(name, value) {
      if (this.#guard === "immutable") throw new TypeError("Headers are immutable.");
      this.#list.push([name, value]);
      this.#sorted = null;
    }

    #append(name, value) {
      value = normalizeValue(value);
      checkName(name);
      this.#appendChecked(name.toLowerCase(), value);
    }

    append(name, value) {
      requireArgs(arguments.length, 2, "Headers.append");
      this.#append(str(name), str(value));
    }

    delete(name) {
      requireArgs(arguments.length, 1, "Headers.delete");
      name = str(name);
      checkName(name);
      if (this.#guard === "immutable") throw new TypeError("Headers are immutable.");
      const n = name.toLowerCase();
      if (!this.#list.some((p) => p[0] === n)) return;
      this.#list = this.#list.filter((p) => p[0] !== n);
      this.#sorted = null;
    }

    get(name) {
      requireArgs(arguments.length, 1, "Headers.get");
      name = str(name);
      checkName(name);
      const n = name.toLowerCase();
      let out = null;
      for (const p of this.#list) {
        if (p[0] === n) out = out === null ? p[1] : `${out}, ${p[1]}`;
      }
      return out;
    }

    getSetCookie() {
      const out = [];
      for (const p of this.#list) if (p[0] === "set-cookie") out.push(p[1]);
      return out;
    }

    has(name) {
      requireArgs(arguments.length, 1, "Headers.has");
      name = str(name);
      checkName(name);
      const n = name.toLowerCase();
      return this.#list.some((p) => p[0] === n);
    }

    set(name, value) {
      requireArgs(arguments.length, 2, "Headers.set");
      name = str(name);
      value = normalizeValue(str(value));
      checkName(name);
      if (this.#guard === "immutable") throw new TypeError("Headers are immutable.");
      const n = name.toLowerCase();
      let found = false;
      this.#list = this.#list.filter((p) => {
        if (p[0] !== n) return true;
        if (found) return false;
        found = true;
        p[1] = value;
        return true;
      });
      if (!found) this.#list.push([n, value]);
      this.#sorted = null;
    }

    // "Sort and combine": names sorted bytewise, values joined with ", ", except that each
    // Set-Cookie value stays its own entry.
    #sortedList() {
      if (this.#sorted !== null) return this.#sorted;
      const groups = new Map();
      for (const [n, v] of this.#list) {
        const g = groups.get(n);
        if (g === undefined) groups.set(n, [v]); else g.push(v);
      }
      const out = [];
      for (const n of [...groups.keys()].sort()) {
        if (n === "set-cookie") for (const v of groups.get(n)) out.push([n, v]);
        else out.push([n, groups.get(n).join(", ")]);
      }
      this.#sorted = out;
      return out;
    }

    [internal.inspectSymbol](depth, options, inspect) {
      const list = this.#sortedList();
      return `Headers {${list.length ? " " + list.map(([k, v]) => `${inspect(k)}: ${inspect(v)}`).join(", ") + " " : ""}}`;
    }
  }
  tag(Headers, "Headers");
  definePairIterable(Headers, "Headers", sortedOf);


  internal.headers = {
    Headers,
    isHeaders,
    create(guard, init = undefined) {
      const h = new Headers();
      if (init !== undefined) fillHeaders(h, init);
      setGuard(h, guard);
      return h;
    },
    clone(h) {
      const c = new Headers();
      for (const [n, v] of headerList(h)) appendRaw(c, n, v);
      setGuard(c, getGuard(h));
      return c;
    },
    fill: fillHeaders,
    has: (h, name) => headerList(h).some((p) => p[0] === name),
    get(h, name) {
      const values = headerList(h).filter((p) => p[0] === name).map((p) => p[1]);
      return values.length === 0 ? null : values.join(", ");
    },
    appendRaw,
    setGuard,
    list: headerList,
  };
  internal.Headers = Headers;
  defineGlobal("Headers", Headers);
})();
