// Web Crypto, part 1: CryptoKey, algorithm normalisation (WebIDL dictionaries), usages and
// JWK helpers (W3C Web Cryptography API). 75_subtle.js builds the algorithms and
// SubtleCrypto on these; the primitives are Rust natives on the RustCrypto crates
// (src/engine/crypto). Key material stays in a WeakMap of the CryptoKey: raw bytes for
// secret keys, PKCS#8 DER for private keys, SPKI DER for public keys, so a snapshot holds
// no native key state.
// Evaluated on first use as a function of the prelude's private objects (src/engine/lazy.rs).
((native, internal) => {
  "use strict";
  const N = native.subtle;
  const { tag, DOMException, bufferSourceBytes, defineGlobal, toDOMString } = internal;

  const CREATE = Symbol("create");
  const err = (name, msg) => new DOMException(msg, name);
  const notSupported = (msg) => err("NotSupportedError", msg);
  const syntaxError = (msg) => err("SyntaxError", msg);
  const invalidAccess = (msg) => err("InvalidAccessError", msg);
  const dataError = (msg) => err("DataError", msg);
  const operationError = (msg) => err("OperationError", msg);

  // Natives throw Errors named after the DOMException to raise.
  const DOM_NAMES = new Set(["NotSupportedError", "DataError", "OperationError", "InvalidAccessError", "SyntaxError"]);
  function call(fn, ...args) {
    try {
      return fn(...args);
    } catch (e) {
      if (e instanceof Error && DOM_NAMES.has(e.name)) throw err(e.name, e.message);
      throw e;
    }
  }

  // ---- WebIDL conversions ----

  const copyBytes = (v, what) => {
    const b = bufferSourceBytes(v);
    if (b === null) throw new TypeError(`${what} is not a BufferSource.`);
    return b.slice();
  };
  function enforceRange(v, max, what) {
    const n = Number(v);
    if (!Number.isFinite(n)) throw new TypeError(`${what} is not a finite number.`);
    const t = Math.trunc(n);
    if (t < 0 || t > max) throw new TypeError(`${what} is outside the accepted range.`);
    return t;
  }

  // ---- CryptoKey ----

  const keys = new WeakMap();
  const slot = (k) => {
    const s = keys.get(k);
    if (s === undefined) throw new TypeError("Illegal invocation: not a CryptoKey.");
    return s;
  };
  const isKey = (k) => keys.has(k);

  class CryptoKey {
    constructor(key = undefined) { if (key !== CREATE) throw new TypeError("Illegal constructor."); }
    get type() { return slot(this).type; }
    get extractable() { return slot(this).extractable; }
    // The attributes are cached frozen copies of the [[algorithm]] and [[usages]] slots (as
    // in deno): every check reads the slots, so script cannot widen a key's usages or
    // change its algorithm by mutating what the getters return.
    get algorithm() {
      const s = slot(this);
      return s.algorithmView ??= exposeAlgorithm(s.algorithm);
    }
    get usages() {
      const s = slot(this);
      return s.usagesView ??= Object.freeze(s.usages.slice());
    }
  }
  tag(CryptoKey, "CryptoKey");
  for (const k of ["type", "extractable", "algorithm", "usages"]) {
    const d = Object.getOwnPropertyDescriptor(CryptoKey.prototype, k);
    Object.defineProperty(CryptoKey.prototype, k, { ...d, enumerable: true });
  }

  const USAGE_ORDER = ["encrypt", "decrypt", "sign", "verify", "deriveKey", "deriveBits", "wrapKey", "unwrapKey"];

  // `data` is the algorithm's internal view (hash, curve); `algorithm` is the [[algorithm]]
  // slot, never handed to script (the getter exposes a copy). Usages stay in the caller's
  // order, duplicates included, as the spec's steps (and deno) keep them.
  function makeKey(type, extractable, algorithm, usages, material, data) {
    const k = new CryptoKey(CREATE);
    keys.set(k, { type, extractable, algorithm, usages: usages.slice(), material, data });
    return k;
  }
  function cloneKey(k) {
    const s = slot(k);
    const algorithm = cloneAlgorithm(s.algorithm);
    const c = new CryptoKey(CREATE);
    keys.set(c, { ...s, algorithm, usages: s.usages.slice(), algorithmView: undefined, usagesView: undefined });
    return c;
  }
  // The algorithm attribute: a frozen copy with frozen nested dictionaries (hash); a
  // Uint8Array (publicExponent) is copied, since a non-empty typed array cannot be frozen.
  function exposeAlgorithm(a) {
    const out = cloneAlgorithm(a);
    for (const v of Object.values(out)) if (v !== null && typeof v === "object" && !(v instanceof Uint8Array)) Object.freeze(v);
    return Object.freeze(out);
  }
  function cloneAlgorithm(a) {
    const out = {};
    for (const [k, v] of Object.entries(a)) {
      out[k] = v instanceof Uint8Array ? v.slice() : v !== null && typeof v === "object" ? { ...v } : v;
    }
    return out;
  }

  // ---- algorithm normalisation ----

  const RSA = ["RSASSA-PKCS1-v1_5", "RSA-PSS", "RSA-OAEP"];
  const AES = ["AES-CTR", "AES-CBC", "AES-GCM", "AES-KW"];
  const entries = (names, type) => Object.fromEntries(names.map((n) => [n, type]));
  const SUPPORTED = {
    digest: entries(["SHA-1", "SHA-256", "SHA-384", "SHA-512"], null),
    generateKey: {
      ...entries(RSA, "RsaHashedKeyGenParams"), ECDSA: "EcKeyGenParams", ECDH: "EcKeyGenParams",
      ...entries(AES, "AesKeyGenParams"), HMAC: "HmacKeyGenParams", Ed25519: null, X25519: null,
    },
    sign: { "RSASSA-PKCS1-v1_5": null, "RSA-PSS": "RsaPssParams", ECDSA: "EcdsaParams", HMAC: null, Ed25519: null },
    importKey: {
      ...entries(RSA, "RsaHashedImportParams"), ECDSA: "EcKeyImportParams", ECDH: "EcKeyImportParams",
      HMAC: "HmacImportParams", HKDF: null, PBKDF2: null, ...entries(AES, null), Ed25519: null, X25519: null,
    },
    deriveBits: { HKDF: "HkdfParams", PBKDF2: "Pbkdf2Params", ECDH: "EcdhKeyDeriveParams", X25519: "EcdhKeyDeriveParams" },
    encrypt: { "RSA-OAEP": "RsaOaepParams", "AES-CBC": "AesCbcParams", "AES-GCM": "AesGcmParams", "AES-CTR": "AesCtrParams" },
    "get key length": { ...entries(AES, "AesDerivedKeyParams"), HMAC: "HmacImportParams", HKDF: null, PBKDF2: null },
    wrapKey: { "AES-KW": null },
  };
  SUPPORTED.verify = SUPPORTED.sign;
  SUPPORTED.decrypt = SUPPORTED.encrypt;
  SUPPORTED.unwrapKey = SUPPORTED.wrapKey;

  // Dictionary members (own and inherited) with their types; "!" marks required ones.
  const DICTS = {
    RsaHashedKeyGenParams: { hash: "hash!", modulusLength: "ulong!", publicExponent: "bigint!" },
    RsaHashedImportParams: { hash: "hash!" },
    RsaPssParams: { saltLength: "ulong!" },
    RsaOaepParams: { label: "buffer" },
    EcdsaParams: { hash: "hash!" },
    EcKeyGenParams: { namedCurve: "string!" },
    EcKeyImportParams: { namedCurve: "string!" },
    EcdhKeyDeriveParams: { public: "key!" },
    AesCtrParams: { counter: "buffer!", length: "octet!" },
    AesKeyGenParams: { length: "ushort!" },
    AesDerivedKeyParams: { length: "ushort!" },
    AesCbcParams: { iv: "buffer!" },
    AesGcmParams: { additionalData: "buffer", iv: "buffer!", tagLength: "octet" },
    HmacImportParams: { hash: "hash!", length: "ulong" },
    HmacKeyGenParams: { hash: "hash!", length: "ulong" },
    HkdfParams: { hash: "hash!", info: "buffer!", salt: "buffer!" },
    Pbkdf2Params: { hash: "hash!", iterations: "ulong!", salt: "buffer!" },
  };

  function convertMember(type, v, what) {
    switch (type) {
      case "hash": return normalize(v, "digest");
      case "ulong": return enforceRange(v, 0xffffffff, what);
      case "ushort": return enforceRange(v, 0xffff, what);
      case "octet": return enforceRange(v, 0xff, what);
      case "string": return toDOMString(v);
      case "buffer": return copyBytes(v, what);
      case "bigint":
        if (!(v instanceof Uint8Array)) throw new TypeError(`${what} is not a Uint8Array.`);
        return v.slice();
      case "key":
        if (!isKey(v)) throw new TypeError(`${what} is not a CryptoKey.`);
        return v;
    }
    throw new TypeError(`unknown member type ${type}`);
  }

  // WebCrypto "normalize an algorithm": returns a fresh object with the registered name and
  // converted members.
  function normalize(alg, op) {
    if (alg === null || (typeof alg !== "object" && typeof alg !== "function")) {
      return normalize({ name: toDOMString(alg) }, op);
    }
    const rawName = alg.name;
    if (rawName === undefined) throw new TypeError("Algorithm: name is required.");
    const name = toDOMString(rawName);
    const table = SUPPORTED[op];
    const upper = name.toUpperCase();
    const registered = Object.keys(table).find((n) => n.toUpperCase() === upper);
    if (registered === undefined) throw notSupported(`Unrecognized algorithm name: ${name}`);
    const dict = table[registered];
    const out = { name: registered };
    if (dict === null) return out;
    const members = DICTS[dict];
    for (const member of Object.keys(members).sort()) {
      const spec = members[member];
      const required = spec.endsWith("!");
      const v = alg[member];
      if (v === undefined) {
        if (required) throw new TypeError(`${dict}: ${member} is required.`);
        continue;
      }
      out[member] = convertMember(required ? spec.slice(0, -1) : spec, v, `${dict}.${member}`);
    }
    return out;
  }

  // ---- shared helpers ----

  const buf = (bytes) => bytes.buffer.byteLength === bytes.byteLength ? bytes.buffer : bytes.slice().buffer;

  function checkUsages(usages, allowed, what) {
    for (const u of usages) if (!allowed.includes(u)) throw syntaxError(`${what}: unsupported key usage "${u}".`);
  }
  const intersect = (usages, allowed) => usages.filter((u) => allowed.includes(u));

  const B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  const B64URL_VALUE = new Int16Array(128).fill(-1);
  for (let i = 0; i < 64; i++) B64URL_VALUE[B64URL.charCodeAt(i)] = i;
  function b64urlEncode(bytes) {
    let out = "";
    let i = 0;
    for (; i + 2 < bytes.length; i += 3) {
      const v = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
      out += B64URL[v >> 18] + B64URL[(v >> 12) & 63] + B64URL[(v >> 6) & 63] + B64URL[v & 63];
    }
    if (bytes.length - i === 1) {
      const v = bytes[i] << 16;
      out += B64URL[v >> 18] + B64URL[(v >> 12) & 63];
    } else if (bytes.length - i === 2) {
      const v = (bytes[i] << 16) | (bytes[i + 1] << 8);
      out += B64URL[v >> 18] + B64URL[(v >> 12) & 63] + B64URL[(v >> 6) & 63];
    }
    return out;
  }
  function b64urlDecode(s, member) {
    if (typeof s !== "string" || s.length % 4 === 1) throw dataError(`JWK member ${member} is not valid base64url.`);
    const out = new Uint8Array(Math.floor((s.length * 3) / 4));
    let acc = 0, bits = 0, j = 0;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      const v = c < 128 ? B64URL_VALUE[c] : -1;
      if (v < 0) throw dataError(`JWK member ${member} is not valid base64url.`);
      acc = ((acc << 6) | v) & 0xffffff;
      bits += 6;
      if (bits >= 8) { bits -= 8; out[j++] = (acc >> bits) & 0xff; }
    }
    return out.subarray(0, j);
  }

  // JsonWebKey dictionary conversion.
  const JWK_STRINGS = ["kty", "use", "alg", "crv", "x", "y", "d", "n", "e", "p", "q", "dp", "dq", "qi", "k"];
  function toJwkDict(v) {
    if (v === null || (typeof v !== "object" && typeof v !== "function")) throw new TypeError("keyData is not a JsonWebKey.");
    const out = {};
    for (const m of [...JWK_STRINGS, "ext", "key_ops", "oth"].sort()) {
      const x = v[m];
      if (x === undefined) continue;
      if (m === "ext") out.ext = Boolean(x);
      else if (m === "key_ops") out.key_ops = toSequence(x, "JsonWebKey.key_ops").map(toDOMString);
      else if (m === "oth") out.oth = x;
      else out[m] = toDOMString(x);
    }
    return out;
  }
  function toSequence(v, what) {
    if (v === null || typeof v !== "object" || typeof v[Symbol.iterator] !== "function") {
      throw new TypeError(`${what} is not a sequence.`);
    }
    return [...v];
  }
  function toUsages(v) {
    const list = toSequence(v, "keyUsages").map(toDOMString);
    for (const u of list) if (!USAGE_ORDER.includes(u)) throw new TypeError(`"${u}" is not a valid KeyUsage.`);
    return list;
  }

  // The JWK checks shared by every import: kty, use, key_ops, ext.
  function checkJwk(jwk, kty, usages, extractable, use) {
    if (jwk.kty !== kty) throw dataError(`JWK kty must be "${kty}".`);
    if (usages.length > 0 && jwk.use !== undefined && jwk.use !== use) throw dataError(`JWK use must be "${use}".`);
    if (jwk.key_ops !== undefined) {
      if (new Set(jwk.key_ops).size !== jwk.key_ops.length) throw dataError("JWK key_ops has duplicates.");
      for (const u of usages) if (!jwk.key_ops.includes(u)) throw dataError(`JWK key_ops does not allow "${u}".`);
    }
    if (jwk.ext === false && extractable) throw dataError("JWK ext is false but the key is to be extractable.");
  }
  const jwkCommon = (s) => ({ key_ops: s.usages.slice(), ext: s.extractable });

  function truncateBits(bytes, length) {
    if (length === null) return bytes;
    if (length > bytes.length * 8) throw operationError("The requested length is longer than the derived secret.");
    const out = bytes.slice(0, Math.ceil(length / 8));
    if (length % 8 !== 0) out[out.length - 1] &= 0xff << (8 - (length % 8));
    return out;
  }

  internal.webCrypto = {
    N, CREATE, notSupported, syntaxError, invalidAccess, dataError, operationError, call, copyBytes, enforceRange,
    slot, isKey, makeKey, normalize, buf, checkUsages, intersect, b64urlEncode, b64urlDecode, toJwkDict, toUsages,
    checkJwk, jwkCommon, truncateBits,
  };
  Object.assign(internal, { isCryptoKey: isKey, cloneCryptoKey: cloneKey });
  defineGlobal("CryptoKey", CryptoKey);
});
