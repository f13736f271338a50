// FormData (XHR Standard) and the codecs the Body mixin uses for it: the multipart/form-data
// encoding algorithm (HTML), the multipart/form-data parser (the algorithm of
// https://andreubotella.github.io/multipart-form-data/, which writes down RFC 7578 as
// browsers implement it), the application/x-www-form-urlencoded parser on bytes (URL
// Standard), and "extract a MIME type" (Fetch) with "parse a MIME type" (MIME Sniffing).
(() => {
  "use strict";
  const native = globalThis.__native;
  const internal = globalThis.__kvmjsInternal;
  const {
    defineGlobal, requireArgs, tag, toUSVString, definePairIterable, isBlob, blobBytes, File, concatBytes,
  } = internal;

  // ---- FormData ----

  // Entry values are strings or File objects; an entry is [name, value].
  function makeEntry(name, value, filename) {
    if (typeof value === "string") return [name, value];
    let file = value;
    if (!(file instanceof File)) file = new File([file], "blob", { type: file.type });
    if (filename !== undefined) file = new File([file], filename, { type: file.type, lastModified: file.lastModified });
    return [name, file];
  }

  // WebIDL overload resolution for (USVString name, USVString value) and
  // (USVString name, Blob blobValue, optional USVString filename).
  function entryArgs(args, what) {
    requireArgs(args.length, 2, what);
    const name = toUSVString(args[0]);
    const value = args[1];
    if (args.length > 2) {
      // Three arguments (even an undefined filename) select the Blob overload.
      if (!isBlob(value)) throw new TypeError(`${what}: parameter 2 is not of type 'Blob'.`);
      return makeEntry(name, value, args[2] === undefined ? undefined : toUSVString(args[2]));
    }
    return isBlob(value) ? makeEntry(name, value, undefined) : [name, toUSVString(value)];
  }

  let formDataList, isFormData, makeFormData;

  class FormData {
    #list = [];

    // There is no HTMLFormElement or HTMLElement, so any `form` or non-null `submitter`
    // argument fails WebIDL's type check.
    constructor(form = undefined, submitter = null) {
      if (form !== undefined) throw new TypeError("FormData constructor: parameter 1 is not of type 'HTMLFormElement'.");
      if (submitter !== null) throw new TypeError("FormData constructor: parameter 2 is not of type 'HTMLElement'.");
    }

    static {
      formDataList = (f) => f.#list;
      isFormData = (f) => f !== null && typeof f === "object" && #list in f;
      makeFormData = (list) => {
        const f = new FormData();
        f.#list = list;
        return f;
      };
    }

    append(name, value) {
      const list = this.#list;
      list.push(entryArgs(arguments, "FormData.append"));
    }

    delete(name) {
      const list = this.#list;
      requireArgs(arguments.length, 1, "FormData.delete");
      const n = toUSVString(name);
      this.#list = list.filter((e) => e[0] !== n);
    }

    get(name) {
      const list = this.#list;
      requireArgs(arguments.length, 1, "FormData.get");
      const n = toUSVString(name);
      for (const e of list) if (e[0] === n) return e[1];
      return null;
    }

    getAll(name) {
      const list = this.#list;
      requireArgs(arguments.length, 1, "FormData.getAll");
      const n = toUSVString(name);
      const out = [];
      for (const e of list) if (e[0] === n) out.push(e[1]);
      return out;
    }

    has(name) {
      const list = this.#list;
      requireArgs(arguments.length, 1, "FormData.has");
      const n = toUSVString(name);
      return list.some((e) => e[0] === n);
    }

    set(name, value) {
      const list = this.#list;
      const entry = entryArgs(arguments, "FormData.set");
      const i = list.findIndex((e) => e[0] === entry[0]);
      if (i === -1) { list.push(entry); return; }
      list[i] = entry;
      this.#list = list.filter((e, j) => j <= i || e[0] !== entry[0]);
    }

    [internal.inspectSymbol](depth, options, inspect) {
      return `FormData ${inspect(this.#list.map((e) => ({ name: e[0], value: e[1] })))}`;
    }
  }
  tag(FormData, "FormData");
  definePairIterable(FormData, "FormData", (f) => formDataList(f));

  // ---- multipart/form-data encoding (HTML) ----

  const CRLF_NORMALIZE = /\r(?!\n)|(?<!\r)\n/g;
  const normalizeNewlines = (s) => s.replace(CRLF_NORMALIZE, "\r\n");
  // Names and filenames: only LF, CR and '"' are escaped, as percent-encoded bytes.
  const escapeField = (s) => s.replace(/[\n\r"]/g, (c) => (c === "\n" ? "%0A" : c === "\r" ? "%0D" : "%22"));

  function boundaryString() {
    const b = new Uint8Array(16);
    native.randomFill(b);
    let s = "----formdata-kvmjs-";
    for (const x of b) s += (x < 16 ? "0" : "") + x.toString(16);
    return s;
  }

  // Returns { bytes, boundary }.
  function multipartEncode(list) {
    const boundary = boundaryString();
    const chunks = [];
    let text = "";
    const flush = () => { if (text !== "") { chunks.push(native.utf8Encode(text)); text = ""; } };
    for (const [entryName, value] of list) {
      const name = escapeField(normalizeNewlines(entryName));
      text += `--${boundary}\r\nContent-Disposition: form-data; name="${name}"`;
      if (typeof value === "string") {
        text += `\r\n\r\n${normalizeNewlines(value)}\r\n`;
      } else {
        const type = value.type === "" ? "application/octet-stream" : value.type;
        text += `; filename="${escapeField(value.name)}"\r\nContent-Type: ${type}\r\n\r\n`;
        flush();
        chunks.push(blobBytes(value));
        text += "\r\n";
      }
    }
    text += `--${boundary}--\r\n`;
    flush();
    return { bytes: chunks.length === 1 ? chunks[0] : concatBytes(chunks), boundary };
  }

  // ---- MIME types (MIME Sniffing "parse a MIME type"; Fetch "extract a MIME type") ----

  const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
  const QUOTED_TOKEN = /^[\t\x20-\x7e\x80-\xff]*$/;
  const HTTP_WS = /^[\t\n\r ]+|[\t\n\r ]+$/g;
  const HTTP_WS_END = /[\t\n\r ]+$/;

  // "Collect an HTTP quoted string" from s at pos (s[pos] is '"'); returns [value, newPos].
  function collectQuoted(s, pos, extractValue) {
    const start = pos;
    let value = "";
    pos++;
    for (;;) {
      while (pos < s.length && s[pos] !== '"' && s[pos] !== "\\") value += s[pos++];
      if (pos >= s.length) break;
      const c = s[pos++];
      if (c === "\\") {
        if (pos >= s.length) { value += "\\"; break; }
        value += s[pos++];
      } else {
        break;
      }
    }
    return [extractValue ? value : s.slice(start, pos), pos];
  }

  // Returns { type, subtype, parameters: Map } or null.
  function parseMimeType(input) {
    const s = input.replace(HTTP_WS, "");
    let pos = s.indexOf("/");
    if (pos === -1) return null;
    const type = s.slice(0, pos);
    if (!TOKEN.test(type)) return null;
    pos++;
    let end = s.indexOf(";", pos);
    if (end === -1) end = s.length;
    const subtype = s.slice(pos, end).replace(HTTP_WS_END, "");
    if (!TOKEN.test(subtype)) return null;
    const mime = { type: type.toLowerCase(), subtype: subtype.toLowerCase(), parameters: new Map() };
    pos = end;
    while (pos < s.length) {
      pos++; // ';'
      while (pos < s.length && (s[pos] === " " || s[pos] === "\t" || s[pos] === "\n" || s[pos] === "\r")) pos++;
      let nameEnd = pos;
      while (nameEnd < s.length && s[nameEnd] !== ";" && s[nameEnd] !== "=") nameEnd++;
      const name = s.slice(pos, nameEnd).toLowerCase();
      pos = nameEnd;
      if (pos < s.length) {
        if (s[pos] === ";") continue;
        pos++; // '='
      }
      if (pos >= s.length) break;
      let value;
      if (s[pos] === '"') {
        [value, pos] = collectQuoted(s, pos, true);
        while (pos < s.length && s[pos] !== ";") pos++;
      } else {
        let vEnd = s.indexOf(";", pos);
        if (vEnd === -1) vEnd = s.length;
        value = s.slice(pos, vEnd).replace(HTTP_WS_END, "");
        pos = vEnd;
        if (value === "") continue;
      }
      if (name !== "" && TOKEN.test(name) && QUOTED_TOKEN.test(value) && !mime.parameters.has(name)) {
        mime.parameters.set(name, value);
      }
    }
    return mime;
  }

  // Fetch "getting, decoding, and splitting" a header value.
  function decodeAndSplit(input) {
    const values = [];
    let pos = 0;
    let temp = "";
    for (;;) {
      while (pos < input.length && input[pos] !== '"' && input[pos] !== ",") temp += input[pos++];
      if (pos < input.length && input[pos] === '"') {
        let q;
        [q, pos] = collectQuoted(input, pos, false);
        temp += q;
        if (pos < input.length) continue;
      }
      values.push(temp.replace(/^[\t ]+|[\t ]+$/g, ""));
      temp = "";
      if (pos >= input.length) return values;
      pos++; // ','
    }
  }

  // Fetch "extract a MIME type" from a Headers object; null for failure.
  function extractMimeType(headers) {
    const raw = internal.headers.get(headers, "content-type");
    if (raw === null) return null;
    let charset = null;
    let essence = null;
    let mime = null;
    for (const value of decodeAndSplit(raw)) {
      const t = parseMimeType(value);
      if (t === null || (t.type === "*" && t.subtype === "*")) continue;
      mime = t;
      const e = `${t.type}/${t.subtype}`;
      if (e !== essence) {
        charset = t.parameters.has("charset") ? t.parameters.get("charset") : null;
        essence = e;
      } else if (!t.parameters.has("charset") && charset !== null) {
        t.parameters.set("charset", charset);
      }
    }
    return mime;
  }

  // ---- application/x-www-form-urlencoded parser on bytes (URL Standard) ----

  function hexValue(b) {
    if (b >= 0x30 && b <= 0x39) return b - 0x30;
    if (b >= 0x41 && b <= 0x46) return b - 0x37;
    if (b >= 0x61 && b <= 0x66) return b - 0x57;
    return -1;
  }

  // Replaces '+' by a space and percent-decodes bytes[from, to), then "UTF-8 decode without BOM".
  function formDecodeBytes(bytes, from, to) {
    const out = new Uint8Array(to - from);
    let j = 0;
    for (let i = from; i < to; i++) {
      const b = bytes[i];
      if (b === 0x2b) { out[j++] = 0x20; continue; }
      if (b === 0x25 && i + 2 < to) {
        const h = hexValue(bytes[i + 1]);
        const l = hexValue(bytes[i + 2]);
        if (h >= 0 && l >= 0) { out[j++] = (h << 4) | l; i += 2; continue; }
      }
      out[j++] = b;
    }
    return native.utf8Decode(out.subarray(0, j), false, true);
  }

  function urlencodedParse(bytes) {
    const list = [];
    const n = bytes.length;
    for (let start = 0; start < n;) {
      let end = bytes.indexOf(0x26, start);
      if (end === -1) end = n;
      if (end > start) {
        let eq = start;
        while (eq < end && bytes[eq] !== 0x3d) eq++;
        list.push([formDecodeBytes(bytes, start, eq), eq < end ? formDecodeBytes(bytes, eq + 1, end) : ""]);
      }
      start = end + 1;
    }
    return list;
  }

  // ---- multipart/form-data parser ----

  const isTabOrSpace = (b) => b === 0x09 || b === 0x20;
  const DISPOSITION_PREFIX = asciiBytes('form-data; name="');
  const FILENAME_PREFIX = asciiBytes('; filename="');

  function asciiBytes(s) {
    const out = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out;
  }
  const isomorphicDecode = (bytes) => {
    let s = "";
    for (let i = 0; i < bytes.length; i += 8192) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 8192));
    return s;
  };
  function startsWith(bytes, pos, seq) {
    if (pos + seq.length > bytes.length) return false;
    for (let i = 0; i < seq.length; i++) if (bytes[pos + i] !== seq[i]) return false;
    return true;
  }
  // First index >= from where seq occurs in bytes, or -1.
  function indexOfSeq(bytes, seq, from) {
    const first = seq[0];
    const last = bytes.length - seq.length;
    for (let i = bytes.indexOf(first, from); i !== -1 && i <= last; i = bytes.indexOf(first, i + 1)) {
      if (startsWith(bytes, i, seq)) return i;
    }
    return -1;
  }

  const fail = (why) => { throw new TypeError(`formData(): invalid multipart/form-data body: ${why}.`); };

  // "Parse a multipart/form-data name": pos is just after the opening quote; returns [name, pos].
  function parseQuotedName(bytes, pos) {
    let end = pos;
    while (end < bytes.length && bytes[end] !== 0x0a && bytes[end] !== 0x0d && bytes[end] !== 0x22) end++;
    if (bytes[end] !== 0x22) fail("unterminated quoted name");
    const raw = bytes.subarray(pos, end);
    const out = new Uint8Array(raw.length);
    let j = 0;
    for (let i = 0; i < raw.length; i++) {
      if (raw[i] === 0x25 && i + 2 < raw.length && raw[i + 1] === 0x30) {
        const c = raw[i + 2];
        const v = c === 0x41 ? 0x0a : c === 0x44 ? 0x0d : -1;
        if (v !== -1) { out[j++] = v; i += 2; continue; }
      }
      if (raw[i] === 0x25 && i + 2 < raw.length && raw[i + 1] === 0x32 && raw[i + 2] === 0x32) {
        out[j++] = 0x22; i += 2; continue;
      }
      out[j++] = raw[i];
    }
    return [native.utf8Decode(out.subarray(0, j), false, true), end + 1];
  }

  // "Parse multipart/form-data headers" at pos; returns { name, filename, contentType, pos }
  // with pos at the CRLF of the empty line.
  function parsePartHeaders(bytes, pos) {
    let name = null;
    let filename = null;
    let contentType = null;
    for (;;) {
      if (bytes[pos] === 0x0d && bytes[pos + 1] === 0x0a) {
        if (name === null) fail("a part has no Content-Disposition name");
        return { name, filename, contentType, pos };
      }
      let end = pos;
      while (end < bytes.length && bytes[end] !== 0x0a && bytes[end] !== 0x0d && bytes[end] !== 0x3a) end++;
      let s = pos;
      let e = end;
      while (s < e && isTabOrSpace(bytes[s])) s++;
      while (e > s && isTabOrSpace(bytes[e - 1])) e--;
      const headerName = isomorphicDecode(bytes.subarray(s, e));
      if (!TOKEN.test(headerName)) fail("invalid header name");
      if (bytes[end] !== 0x3a) fail("header without ':'");
      pos = end + 1;
      while (pos < bytes.length && isTabOrSpace(bytes[pos])) pos++;
      const lower = headerName.toLowerCase();
      if (lower === "content-disposition") {
        name = null;
        filename = null;
        if (!startsWith(bytes, pos, DISPOSITION_PREFIX)) fail("Content-Disposition is not 'form-data; name=\"...\"'");
        [name, pos] = parseQuotedName(bytes, pos + DISPOSITION_PREFIX.length);
        if (startsWith(bytes, pos, FILENAME_PREFIX)) {
          [filename, pos] = parseQuotedName(bytes, pos + FILENAME_PREFIX.length);
        }
      } else if (lower === "content-type") {
        let vEnd = pos;
        while (vEnd < bytes.length && bytes[vEnd] !== 0x0a && bytes[vEnd] !== 0x0d) vEnd++;
        let t = vEnd;
        while (t > pos && isTabOrSpace(bytes[t - 1])) t--;
        contentType = isomorphicDecode(bytes.subarray(pos, t));
        pos = vEnd;
      } else {
        while (pos < bytes.length && bytes[pos] !== 0x0a && bytes[pos] !== 0x0d) pos++;
      }
      if (!(bytes[pos] === 0x0d && bytes[pos + 1] === 0x0a)) fail("header line not ended by CRLF");
      pos += 2;
    }
  }

  // RFC 2046's preamble (before the first delimiter), transport padding (spaces and tabs
  // after a delimiter) and epilogue (after the close delimiter and its CRLF) are allowed and
  // ignored; everything else follows the parser of the multipart/form-data draft.
  function multipartParse(bytes, boundaryString) {
    const boundary = asciiBytes(boundaryString);
    // "--" boundary, and the delimiter that ends a part's body: CRLF "--" boundary.
    const dashBoundary = concatBytes([asciiBytes("--"), boundary]);
    const delimiter = concatBytes([asciiBytes("\r\n--"), boundary]);
    const list = [];
    let pos = 0;
    if (!startsWith(bytes, 0, dashBoundary)) {
      pos = indexOfSeq(bytes, delimiter, 0);
      if (pos === -1) fail("no boundary delimiter");
      pos += 2;
    }
    for (;;) {
      // Here bytes[pos..] starts with "--" boundary.
      pos += dashBoundary.length;
      const close = bytes[pos] === 0x2d && bytes[pos + 1] === 0x2d;
      if (close) pos += 2;
      while (pos < bytes.length && isTabOrSpace(bytes[pos])) pos++;
      if (close) {
        if (pos === bytes.length || (bytes[pos] === 0x0d && bytes[pos + 1] === 0x0a)) return list;
        fail("close delimiter not followed by CRLF");
      }
      if (!(bytes[pos] === 0x0d && bytes[pos + 1] === 0x0a)) fail("boundary delimiter not followed by CRLF");
      pos += 2;
      const h = parsePartHeaders(bytes, pos);
      pos = h.pos + 2;
      const end = indexOfSeq(bytes, delimiter, pos);
      if (end === -1) fail("part not ended by a boundary delimiter");
      const body = bytes.subarray(pos, end);
      pos = end + 2;
      let value;
      if (h.filename !== null) {
        let type = h.contentType === null ? "text/plain" : h.contentType;
        if (/[^\x00-\x7f]/.test(type)) type = "";
        value = new File([body.slice()], h.filename, { type });
      } else {
        value = native.utf8Decode(body, false, true);
      }
      list.push([h.name, value]);
    }
  }

  // Fetch "package data" for FormData: bytes are the whole body, headers the Headers object.
  function packageFormData(bytes, headers) {
    const mime = extractMimeType(headers);
    if (mime !== null && mime.type === "multipart" && mime.subtype === "form-data") {
      const boundary = mime.parameters.get("boundary");
      if (boundary === undefined) throw new TypeError("formData(): multipart/form-data Content-Type has no boundary.");
      return makeFormData(multipartParse(bytes, boundary));
    }
    if (mime !== null && mime.type === "application" && mime.subtype === "x-www-form-urlencoded") {
      return makeFormData(urlencodedParse(bytes));
    }
    throw new TypeError("formData(): the Content-Type is neither multipart/form-data nor application/x-www-form-urlencoded.");
  }

  Object.assign(internal, { FormData, isFormData, formDataList, multipartEncode, packageFormData, extractMimeType, parseMimeType });
  defineGlobal("FormData", FormData);
})();
