// console (Console Standard) with a Node-like value formatter; all output goes through
// native.log. The exact formatting is implementation-defined; this aims to read like
// Node's util.inspect for common values.
(() => {
  "use strict";
  const native = globalThis.__native;
  const internal = globalThis.__kvmjsInternal;
  const { defineGlobal, typedArrayName, isArrayBuffer, inspectSymbol, toUSVString } = internal;

  const LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3;
  const MAX_ITEMS = 100;
  const LINE_WIDTH = 80;

  // Exception-based brand checks are slow, so each runs only when the builtin tag agrees.
  const { builtinTag } = internal;
  const brand = (tagName, check) => (v) => {
    if (builtinTag(v) !== tagName) return false;
    try { check(v); return true; } catch { return false; }
  };
  const mapSize = Object.getOwnPropertyDescriptor(Map.prototype, "size").get;
  const setSize = Object.getOwnPropertyDescriptor(Set.prototype, "size").get;
  const regexpSource = Object.getOwnPropertyDescriptor(RegExp.prototype, "source").get;
  const isMap = brand("[object Map]", (v) => mapSize.call(v));
  const isSet = brand("[object Set]", (v) => setSize.call(v));
  const isDate = brand("[object Date]", (v) => Date.prototype.getTime.call(v));
  const isRegExp = (v) => v !== RegExp.prototype && brand("[object RegExp]", (x) => regexpSource.call(x))(v);
  const isWeakMap = brand("[object WeakMap]", (v) => WeakMap.prototype.has.call(v, {}));
  const isWeakSet = brand("[object WeakSet]", (v) => WeakSet.prototype.has.call(v, {}));
  const isError = (v) => v instanceof Error || builtinTag(v) === "[object Error]";
  const BOXES = [
    ["Number", Number.prototype.valueOf], ["String", String.prototype.valueOf],
    ["Boolean", Boolean.prototype.valueOf], ["BigInt", BigInt.prototype.valueOf], ["Symbol", Symbol.prototype.valueOf],
  ];
  const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

  function quote(s) {
    let q = "'";
    if (s.includes("'")) {
      if (!s.includes('"')) q = '"';
      else if (!s.includes("`") && !s.includes("${")) q = "`";
    }
    if (!/[\x00-\x1f\x7f\\'"`\ud800-\udfff]/.test(s)) return q + s + q;
    let out = q;
    for (let i = 0; i < s.length; i++) {
      const ch = s[i];
      const c = s.charCodeAt(i);
      if (ch === q || ch === "\\") out += "\\" + ch;
      else if (ch === "\n") out += "\\n";
      else if (ch === "\t") out += "\\t";
      else if (ch === "\r") out += "\\r";
      else if (ch === "\b") out += "\\b";
      else if (ch === "\f") out += "\\f";
      else if (ch === "\v") out += "\\v";
      else if (c < 0x20 || c === 0x7f) out += "\\x" + c.toString(16).toUpperCase().padStart(2, "0");
      else if (c >= 0xd800 && c <= 0xdfff) {
        const d = s.charCodeAt(i + 1);
        if (c <= 0xdbff && d >= 0xdc00 && d <= 0xdfff) { out += ch + s[i + 1]; i++; } else out += "\\u" + c.toString(16).toUpperCase();
      } else out += ch;
    }
    return out + q;
  }

  function formatNumber(n) { return Object.is(n, -0) ? "-0" : `${n}`; }

  function formatPrimitive(v) {
    switch (typeof v) {
      case "string": return quote(v);
      case "number": return formatNumber(v);
      case "bigint": return `${v}n`;
      case "symbol": return Symbol.prototype.toString.call(v);
      default: return `${v}`;
    }
  }

  function constructorName(v) {
    try {
      for (let o = v; o !== null; o = Object.getPrototypeOf(o)) {
        const d = Object.getOwnPropertyDescriptor(o, "constructor");
        if (d !== undefined && typeof d.value === "function" && typeof d.value.name === "string" && d.value.name !== "") return d.value.name;
      }
    } catch { /* exotic objects: fall through */ }
    return null;
  }

  function functionBase(fn) {
    let src = "";
    try { src = Function.prototype.toString.call(fn); } catch { /* ignore */ }
    let name = "";
    try { name = typeof fn.name === "string" ? fn.name : ""; } catch { /* ignore */ }
    if (/^class\b/.test(src)) return `[class ${name || "(anonymous)"}]`;
    const kind = constructorName(Object.getPrototypeOf(fn) ?? {}) ?? "Function";
    const label = ["AsyncFunction", "GeneratorFunction", "AsyncGeneratorFunction"].includes(kind) ? kind : "Function";
    return `[${label}${name ? `: ${name}` : " (anonymous)"}]`;
  }

  function indentLines(text, pad) {
    return pad === "" ? text : text.replace(/\n/g, `\n${pad}`);
  }

  function formatError(ctx, e, level) {
    let name = "Error", message = "", stack;
    try { name = `${e.name}`; } catch { /* ignore */ }
    try { message = `${e.message ?? ""}`; } catch { /* ignore */ }
    try { stack = e.stack; } catch { /* ignore */ }
    const head = message === "" ? name : `${name}: ${message}`;
    let text;
    if (typeof stack === "string" && stack.trim() !== "") {
      // V8-style stacks start with the header; QuickJS stacks hold only the frames.
      text = /^\s*at\s/.test(stack) ? `${head}\n${stack}` : stack;
      text = text.replace(/\s+$/, "");
    } else {
      text = `[${head}]`;
    }
    text = indentLines(text, "  ".repeat(level));
    const extras = [];
    for (const key of ownEnumerableKeys(e)) {
      if (key === "stack" || key === "message") continue;
      extras.push(formatProperty(ctx, e, key, level));
    }
    if (Object.hasOwn(e, "cause") && !Object.getOwnPropertyDescriptor(e, "cause").enumerable) {
      extras.push(`[cause]: ${formatValue(ctx, e.cause, level + 1)}`);
    }
    return extras.length === 0 ? text : reduce(extras, `${text} `, ["{", "}"], level);
  }

  function ownEnumerableKeys(v) {
    const keys = [];
    for (const k of Reflect.ownKeys(v)) {
      const d = Reflect.getOwnPropertyDescriptor(v, k);
      if (d !== undefined && d.enumerable) keys.push(k);
    }
    return keys;
  }

  function formatProperty(ctx, obj, key, level) {
    const d = Reflect.getOwnPropertyDescriptor(obj, key);
    let value;
    if (d === undefined) value = "undefined";
    else if (d.get !== undefined || d.set !== undefined) value = d.get && d.set ? "[Getter/Setter]" : d.get ? "[Getter]" : "[Setter]";
    else value = formatValue(ctx, d.value, level + 1);
    const name = typeof key === "symbol" ? `[${Symbol.prototype.toString.call(key)}]` : IDENTIFIER.test(key) ? key : quote(key);
    return `${name}: ${value}`;
  }

  // Single line when it fits; long lists of short items are packed into aligned columns.
  function reduce(entries, prefix, braces, level) {
    const pad = "  ".repeat(level);
    let total = prefix.length + braces[0].length + braces[1].length + 2 + pad.length;
    let multiline = false;
    let longest = 0;
    for (const e of entries) {
      total += e.length + 2;
      if (e.length > longest) longest = e.length;
      if (e.includes("\n")) multiline = true;
    }
    if (!multiline && total <= LINE_WIDTH) return `${prefix}${braces[0]} ${entries.join(", ")} ${braces[1]}`;
    if (!multiline && braces[0] === "[" && entries.length > 6 && longest <= 16) {
      const width = longest + 2;
      const cols = Math.max(1, Math.min(16, Math.floor((LINE_WIDTH - pad.length - 2) / width)));
      const numeric = entries.every((e) => /^-?[\d.]/.test(e));
      const lines = [];
      for (let i = 0; i < entries.length; i += cols) {
        const row = entries.slice(i, i + cols);
        const last = row.length - 1;
        lines.push(row.map((e, j) => {
          if (numeric) return j < last ? `${e.padStart(longest)},` : e.padStart(longest);
          return j < last ? `${e},`.padEnd(longest + 1) : e;
        }).join(" "));
      }
      return `${prefix}${braces[0]}\n${pad}  ${lines.join(`,\n${pad}  `)}\n${pad}${braces[1]}`;
    }
    return `${prefix}${braces[0]}\n${pad}  ${entries.join(`,\n${pad}  `)}\n${pad}${braces[1]}`;
  }

  function formatList(ctx, v, level, length, read) {
    const entries = [];
    const shown = Math.min(length, MAX_ITEMS);
    let i = 0;
    while (i < shown) {
      if (!Object.hasOwn(v, i)) {
        let j = i;
        while (j < length && !Object.hasOwn(v, j)) j++;
        entries.push(`<${j - i} empty item${j - i > 1 ? "s" : ""}>`);
        i = j;
        continue;
      }
      entries.push(read(v[i]));
      i++;
    }
    if (i < length) entries.push(`... ${length - i} more item${length - i > 1 ? "s" : ""}`);
    return entries;
  }

  const isIndexKey = (k) => typeof k === "string" && /^(0|[1-9][0-9]*)$/.test(k);

  function formatValue(ctx, v, level) {
    if (v === null || (typeof v !== "object" && typeof v !== "function")) return formatPrimitive(v);

    if (ctx.seen.includes(v)) {
      let idx = ctx.refs.get(v);
      if (idx === undefined) { idx = ctx.refs.size + 1; ctx.refs.set(v, idx); }
      return `[Circular *${idx}]`;
    }

    let custom;
    try { custom = v[inspectSymbol]; } catch { /* ignore */ }
    if (typeof custom === "function") {
      if (level > ctx.depth) return `[${constructorName(v) ?? "Object"}]`;
      ctx.seen.push(v);
      try {
        const r = custom.call(v, ctx.depth - level, { depth: ctx.depth - level }, (x) => formatValue(ctx, x, level));
        if (typeof r === "string") return r;
        if (r !== v) return formatValue(ctx, r, level);
      } finally {
        ctx.seen.pop();
      }
    }

    if (isError(v)) {
      ctx.seen.push(v);
      try { return withRef(ctx, v, formatError(ctx, v, level)); } finally { ctx.seen.pop(); }
    }
    if (isDate(v)) {
      const t = Date.prototype.getTime.call(v);
      return Number.isNaN(t) ? "Invalid Date" : Date.prototype.toISOString.call(v);
    }
    if (isRegExp(v)) return RegExp.prototype.toString.call(v);
    const tagName = builtinTag(v);
    for (const [name, valueOf] of BOXES) {
      if (tagName !== `[object ${name}]`) continue;
      let p;
      try { p = valueOf.call(v); } catch { continue; }
      return `[${name}: ${formatPrimitive(p)}]`;
    }

    const ctor = constructorName(v);
    const isFn = typeof v === "function";
    if (level > ctx.depth) {
      if (isFn) return functionBase(v);
      return Array.isArray(v) ? "[Array]" : `[${ctor ?? "Object"}]`;
    }

    ctx.seen.push(v);
    try {
      return withRef(ctx, v, formatRaw(ctx, v, level, ctor, isFn));
    } finally {
      ctx.seen.pop();
    }
  }

  function withRef(ctx, v, text) {
    const idx = ctx.refs.get(v);
    return idx === undefined ? text : `<ref *${idx}> ${text}`;
  }

  function formatRaw(ctx, v, level, ctor, isFn) {
    let keys = ownEnumerableKeys(v);
    let entries = [];
    let prefix = "";
    let braces = ["{", "}"];
    const item = (x) => formatValue(ctx, x, level + 1);
    const taName = typedArrayName(v);

    if (Array.isArray(v)) {
      prefix = ctor === "Array" ? "" : `${ctor ?? "[Array: null prototype]"}(${v.length}) `;
      braces = ["[", "]"];
      entries = formatList(ctx, v, level, v.length, item);
      keys = keys.filter((k) => !isIndexKey(k));
    } else if (taName !== undefined) {
      prefix = `${taName}(${v.length}) `;
      braces = ["[", "]"];
      entries = formatList(ctx, v, level, v.length, formatPrimitive);
      keys = keys.filter((k) => !isIndexKey(k));
    } else if (isArrayBuffer(v)) {
      const bytes = new Uint8Array(v);
      let hex = Array.from(bytes.subarray(0, 50), (b) => b.toString(16).padStart(2, "0")).join(" ");
      if (bytes.length > 50) hex += ` ... ${bytes.length - 50} more byte${bytes.length - 50 > 1 ? "s" : ""}`;
      prefix = `${ctor ?? "ArrayBuffer"} `;
      entries = [`[Uint8Contents]: <${hex}>`, `byteLength: ${bytes.length}`];
    } else if (isMap(v)) {
      prefix = `${ctor ?? "Map"}(${mapSize.call(v)}) `;
      let n = 0;
      for (const [k, val] of Map.prototype.entries.call(v)) {
        if (n++ >= MAX_ITEMS) { entries.push(`... ${mapSize.call(v) - MAX_ITEMS} more items`); break; }
        entries.push(`${item(k)} => ${item(val)}`);
      }
    } else if (isSet(v)) {
      prefix = `${ctor ?? "Set"}(${setSize.call(v)}) `;
      let n = 0;
      for (const val of Set.prototype.values.call(v)) {
        if (n++ >= MAX_ITEMS) { entries.push(`... ${setSize.call(v) - MAX_ITEMS} more items`); break; }
        entries.push(item(val));
      }
    } else if (isFn) {
      const base = functionBase(v);
      if (keys.length === 0) return base;
      prefix = `${base} `;
    } else if (isWeakMap(v) || isWeakSet(v)) {
      return `${ctor ?? "WeakMap"} { <items unknown> }`;
    } else if (v instanceof Promise) {
      // DEVIATION: a promise's state cannot be observed synchronously from JS.
      return "Promise { <unknown> }";
    } else {
      let tagName;
      try { tagName = v[Symbol.toStringTag]; } catch { /* ignore */ }
      const base = ctor === null ? "[Object: null prototype]" : ctor;
      if (typeof tagName === "string" && tagName !== "" && tagName !== ctor) prefix = `${base ?? "Object"} [${tagName}] `;
      else prefix = base === "Object" ? "" : `${base} `;
    }
    for (const k of keys) entries.push(formatProperty(ctx, v, k, level));
    if (entries.length === 0) return `${prefix}${braces[0]}${braces[1]}`;
    return reduce(entries, prefix, braces, level);
  }

  function inspect(value, options = undefined) {
    const depth = options && options.depth !== undefined ? (options.depth === null ? Infinity : Number(options.depth)) : 2;
    return formatValue({ depth, seen: [], refs: new Map() }, value, 0);
  }

  function hasOwnToString(v) {
    for (let o = v; o !== null && o !== Object.prototype && o !== Error.prototype; o = Object.getPrototypeOf(o)) {
      if (Object.hasOwn(o, "toString")) return true;
    }
    return false;
  }

  const formatters = {
    s(a) {
      if (typeof a === "bigint") return `${a}n`;
      if (typeof a === "symbol") return Symbol.prototype.toString.call(a);
      if (typeof a === "number") return formatNumber(a);
      if (a !== null && typeof a === "object" && !hasOwnToString(a)) return inspect(a, { depth: 0 });
      return `${a}`;
    },
    d(a) {
      if (typeof a === "bigint") return `${a}n`;
      if (typeof a === "symbol") return "NaN";
      return formatNumber(Number(a));
    },
    i(a) {
      if (typeof a === "bigint") return `${a}n`;
      if (typeof a === "symbol") return "NaN";
      return formatNumber(parseInt(a, 10));
    },
    f(a) { return typeof a === "symbol" ? "NaN" : formatNumber(parseFloat(a)); },
    j(a) {
      try { const s = JSON.stringify(a); return s === undefined ? "undefined" : s; } catch (e) {
        if (e instanceof TypeError && /circular|cyclic/i.test(e.message)) return "[Circular]";
        throw e;
      }
    },
    o(a) { return inspect(a, { depth: 4 }); },
    O(a) { return inspect(a); },
    c() { return ""; },
  };

  // Printer input: a leading string is a format string; other arguments are inspected,
  // except that strings are printed raw.
  function formatArgs(args) {
    if (args.length === 0) return "";
    const first = args[0];
    let out;
    let next = 1;
    if (typeof first === "string") {
      if (args.length === 1) return first;
      out = "";
      let last = 0;
      for (let p = 0; p < first.length - 1; p++) {
        if (first.charCodeAt(p) !== 37) continue;
        const c = first[p + 1];
        if (c === "%") {
          out += first.slice(last, p) + "%";
          last = p + 2;
          p++;
          continue;
        }
        if (next >= args.length || !Object.hasOwn(formatters, c)) continue;
        out += first.slice(last, p) + formatters[c](args[next++]);
        last = p + 2;
        p++;
      }
      out += first.slice(last);
    } else {
      out = inspect(first);
    }
    for (; next < args.length; next++) {
      const a = args[next];
      out += " " + (typeof a === "string" ? a : inspect(a));
    }
    return out;
  }

  let groupIndent = "";
  const counts = new Map();
  const timers = new Map();

  // Lone surrogates are replaced so the message always converts to a Rust string.
  function emit(level, text) {
    text = toUSVString(text);
    native.log(level, groupIndent === "" ? text : groupIndent + text.replace(/\n/g, `\n${groupIndent}`));
  }

  function formatDuration(ms) {
    return `${ms.toFixed(3)}ms`;
  }

  function drawTable(header, rows) {
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)) + 2);
    const line = (l, m, r) => l + widths.map((w) => "─".repeat(w)).join(m) + r;
    const row = (cells) => "│" + cells.map((c, i) => " " + c.padEnd(widths[i] - 1)).join("│") + "│";
    return [line("┌", "┬", "┐"), row(header), line("├", "┼", "┤"), ...rows.map(row), line("└", "┴", "┘")].join("\n");
  }

  const cell = (v) => (v === undefined ? "" : inspect(v, { depth: 0 }));

  const console = {
    log(...data) { emit(LOG_INFO, formatArgs(data)); },
    info(...data) { emit(LOG_INFO, formatArgs(data)); },
    debug(...data) { emit(LOG_DEBUG, formatArgs(data)); },
    warn(...data) { emit(LOG_WARN, formatArgs(data)); },
    error(...data) { emit(LOG_ERROR, formatArgs(data)); },
    trace(...data) {
      let stack = "";
      try { stack = `${new Error().stack ?? ""}`; } catch { /* ignore */ }
      // Drop a V8-style header line and the frame of trace() itself.
      const frames = stack.split("\n").filter((l) => /^\s*at\s/.test(l)).slice(1).join("\n");
      const text = data.length === 0 ? "Trace" : `Trace: ${formatArgs(data)}`;
      emit(LOG_INFO, frames === "" ? text : `${text}\n${frames}`);
    },
    assert(condition = false, ...data) {
      if (condition) return;
      if (data.length === 0) data = ["Assertion failed"];
      else if (typeof data[0] === "string") data[0] = `Assertion failed: ${data[0]}`;
      else data.unshift("Assertion failed");
      emit(LOG_ERROR, formatArgs(data));
    },
    dir(item = undefined, options = undefined) {
      emit(LOG_INFO, inspect(item, options));
    },
    dirxml(...data) { emit(LOG_INFO, formatArgs(data)); },
    table(data = undefined, properties = undefined) {
      if (data === null || typeof data !== "object") { emit(LOG_INFO, formatArgs([data])); return; }
      const index = [];
      const values = [];
      if (isMap(data)) {
        for (const [k, val] of Map.prototype.entries.call(data)) { index.push(inspect(k)); values.push(val); }
      } else if (isSet(data)) {
        let i = 0;
        for (const val of Set.prototype.values.call(data)) { index.push(`${i++}`); values.push(val); }
      } else {
        for (const k of Object.keys(data)) { index.push(k); values.push(data[k]); }
      }
      let columns = [];
      let hasValues = false;
      for (const row of values) {
        if (row !== null && (typeof row === "object" || typeof row === "function")) {
          for (const c of Object.keys(row)) if (!columns.includes(c)) columns.push(c);
        } else {
          hasValues = true;
        }
      }
      if (Array.isArray(properties)) columns = properties.map((p) => `${p}`);
      const header = ["(index)", ...columns, ...(hasValues ? ["Values"] : [])];
      const rows = values.map((row, i) => {
        const isObj = row !== null && (typeof row === "object" || typeof row === "function");
        const cells = [index[i], ...columns.map((c) => (isObj && Object.hasOwn(row, c) ? cell(row[c]) : ""))];
        if (hasValues) cells.push(isObj ? "" : cell(row));
        return cells;
      });
      emit(LOG_INFO, drawTable(header, rows));
    },
    count(label = "default") {
      label = `${label}`;
      const n = (counts.get(label) ?? 0) + 1;
      counts.set(label, n);
      emit(LOG_INFO, `${label}: ${n}`);
    },
    countReset(label = "default") {
      label = `${label}`;
      if (!counts.has(label)) { emit(LOG_WARN, `Count for '${label}' does not exist`); return; }
      counts.set(label, 0);
    },
    group(...data) {
      if (data.length > 0) emit(LOG_INFO, formatArgs(data));
      groupIndent += "  ";
    },
    groupCollapsed(...data) { console.group(...data); },
    groupEnd() { groupIndent = groupIndent.slice(0, -2); },
    time(label = "default") {
      label = `${label}`;
      if (timers.has(label)) { emit(LOG_WARN, `Warning: Label '${label}' already exists for console.time()`); return; }
      timers.set(label, native.now());
    },
    timeLog(label = "default", ...data) {
      label = `${label}`;
      const start = timers.get(label);
      if (start === undefined) { emit(LOG_WARN, `Warning: No such label '${label}' for console.timeLog()`); return; }
      const extra = data.length > 0 ? ` ${formatArgs(data)}` : "";
      emit(LOG_INFO, `${label}: ${formatDuration(native.now() - start)}${extra}`);
    },
    timeEnd(label = "default") {
      label = `${label}`;
      const start = timers.get(label);
      if (start === undefined) { emit(LOG_WARN, `Warning: No such label '${label}' for console.timeEnd()`); return; }
      timers.delete(label);
      emit(LOG_INFO, `${label}: ${formatDuration(native.now() - start)}`);
    },
    clear() { /* no terminal to clear */ },
  };
  Object.defineProperty(console, Symbol.toStringTag, { value: "console", configurable: true });

  Object.assign(internal, { inspect, formatArgs });
  defineGlobal("console", console);
})();
