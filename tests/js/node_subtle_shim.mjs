// `__native.subtle` for the Node harness, on node:crypto: the same contract as
// src/engine/crypto/natives.rs (Uint8Array in and out, failures thrown as Errors named after
// the DOMException), so src/web/75_subtle.js and tests/js/webapi/subtle.js run against an
// independent implementation of the primitives.
import nodeCrypto from "node:crypto";

const HASH = { "SHA-1": "sha1", "SHA-256": "sha256", "SHA-384": "sha384", "SHA-512": "sha512" };
const CURVE = { "P-256": "prime256v1", "P-384": "secp384r1" };
const DOM_NAMES = new Set(["NotSupportedError", "DataError", "OperationError"]);
const fail = (name, msg) => { const e = new Error(msg); e.name = name; return e; };
const u8 = (b) => new Uint8Array(b.buffer, b.byteOffset, b.byteLength).slice();
const hashOf = (h) => { if (!HASH[h]) throw fail("NotSupportedError", `Unrecognized hash ${h}`); return HASH[h]; };
const b64 = (s) => Buffer.from(s, "base64url");

function guard(kind, fn) {
  try { return fn(); } catch (e) { throw DOM_NAMES.has(e.name) ? e : fail(kind, e.message); }
}
const priv = (der) => nodeCrypto.createPrivateKey({ key: Buffer.from(der), format: "der", type: "pkcs8" });
const pub = (der) => nodeCrypto.createPublicKey({ key: Buffer.from(der), format: "der", type: "spki" });
const exportPair = (k) => [u8(k.privateKey.export({ format: "der", type: "pkcs8" })), u8(k.publicKey.export({ format: "der", type: "spki" }))];
const derOf = (k) => u8(k.type === "private" ? k.export({ format: "der", type: "pkcs8" }) : k.export({ format: "der", type: "spki" }));

// natives.rs refuses RSA moduli over 8192 bits (their native work cannot be interrupted).
const RSA_MAX_BITS = 8192;
function checkRsaSize(k) {
  if (k.asymmetricKeyType === "rsa" && k.asymmetricKeyDetails.modulusLength > RSA_MAX_BITS) {
    throw fail("NotSupportedError", `RSA keys with a modulus over ${RSA_MAX_BITS} bits are not supported`);
  }
  return k;
}

function checkFamily(kind, param, k) {
  const t = k.asymmetricKeyType;
  const ok = kind === "EC" ? t === "ec" && k.asymmetricKeyDetails.namedCurve === CURVE[param]
    : kind === "OKP" ? t === param.toLowerCase() : t === "rsa";
  if (!ok) throw fail("DataError", "The key is for another algorithm or curve");
  return k;
}

export const subtleShim = {
  digest: (h, d) => u8(nodeCrypto.createHash(hashOf(h)).update(d).digest()),
  hmacSign: (h, k, d) => u8(nodeCrypto.createHmac(hashOf(h), k).update(d).digest()),
  hmacVerify(h, k, d, sig) {
    const t = nodeCrypto.createHmac(hashOf(h), k).update(d).digest();
    return t.length === sig.length && nodeCrypto.timingSafeEqual(t, sig);
  },
  pbkdf2: (h, pw, salt, it, len) => u8(nodeCrypto.pbkdf2Sync(pw, salt, it, len, hashOf(h))),
  hkdf: (h, ikm, salt, info, len) => guard("OperationError", () => u8(new Uint8Array(nodeCrypto.hkdfSync(hashOf(h), ikm, salt, info, len)))),
  aesGcm(enc, key, iv, aad, tagBits, d) {
    const alg = `aes-${key.length * 8}-gcm`;
    const tl = tagBits / 8;
    return guard("OperationError", () => {
      if (enc) {
        const c = nodeCrypto.createCipheriv(alg, key, iv, { authTagLength: tl });
        c.setAAD(aad);
        return u8(Buffer.concat([c.update(d), c.final(), c.getAuthTag()]));
      }
      const c = nodeCrypto.createDecipheriv(alg, key, iv, { authTagLength: tl });
      c.setAAD(aad);
      c.setAuthTag(d.subarray(d.length - tl));
      return u8(Buffer.concat([c.update(d.subarray(0, d.length - tl)), c.final()]));
    });
  },
  aesCbc(enc, key, iv, d) {
    const alg = `aes-${key.length * 8}-cbc`;
    return guard("OperationError", () => {
      const c = enc ? nodeCrypto.createCipheriv(alg, key, iv) : nodeCrypto.createDecipheriv(alg, key, iv);
      return u8(Buffer.concat([c.update(d), c.final()]));
    });
  },
  // Node counts with all 128 bits; the tests keep away from the wrap.
  aesCtr(key, counter, length, d) {
    const c = nodeCrypto.createCipheriv(`aes-${key.length * 8}-ctr`, key, counter);
    return u8(Buffer.concat([c.update(d), c.final()]));
  },
  aesKw(wrap, key, d) {
    const alg = `id-aes${key.length * 8}-wrap`;
    const iv = Buffer.from("A6A6A6A6A6A6A6A6", "hex");
    return guard("OperationError", () => {
      const c = wrap ? nodeCrypto.createCipheriv(alg, key, iv) : nodeCrypto.createDecipheriv(alg, key, iv);
      return u8(Buffer.concat([c.update(d), c.final()]));
    });
  },
  generateKeyPair(kind, param, bits, e) {
    if (kind === "EC") return exportPair(nodeCrypto.generateKeyPairSync("ec", { namedCurve: CURVE[param] }));
    if (kind === "OKP") return exportPair(nodeCrypto.generateKeyPairSync(param.toLowerCase()));
    if (bits > RSA_MAX_BITS) throw fail("OperationError", `RSA modulusLength must be at most ${RSA_MAX_BITS}`);
    const publicExponent = e.reduce((a, b) => a * 256 + b, 0);
    return guard("OperationError", () => exportPair(nodeCrypto.generateKeyPairSync("rsa", { modulusLength: bits, publicExponent })));
  },
  importKey(kind, param, format, d) {
    return guard("DataError", () => {
      if (format === "raw") {
        const jwk = kind === "EC"
          ? { kty: "EC", crv: param, x: Buffer.from(d.subarray(1, 1 + (d.length - 1) / 2)).toString("base64url"), y: Buffer.from(d.subarray(1 + (d.length - 1) / 2)).toString("base64url") }
          : { kty: "OKP", crv: param, x: Buffer.from(d).toString("base64url") };
        if (kind === "EC" && d[0] !== 4) throw fail("DataError", "only uncompressed points");
        return [derOf(nodeCrypto.createPublicKey({ key: jwk, format: "jwk" })), false];
      }
      const k = checkRsaSize(checkFamily(kind, param, format === "pkcs8" ? priv(d) : pub(d)));
      return [derOf(k), format === "pkcs8"];
    });
  },
  exportRaw(kind, param, d) {
    const j = pub(d).export({ format: "jwk" });
    return kind === "EC" ? u8(Buffer.concat([Buffer.from([4]), b64(j.x), b64(j.y)])) : u8(b64(j.x));
  },
  jwkExport(kind, param, d, isPrivate) {
    const j = (isPrivate ? priv(d) : pub(d)).export({ format: "jwk" });
    const names = kind === "EC" ? ["x", "y", "d"] : kind === "OKP" ? ["x", "d"] : ["n", "e", "d", "p", "q", "dp", "dq", "qi"];
    return names.filter((n) => j[n] !== undefined).map((n) => u8(b64(j[n])));
  },
  jwkImport(kind, param, m) {
    const names = kind === "EC" ? ["d", "x", "y"] : kind === "OKP" ? ["d", "x"] : ["n", "e", "d", "p", "q", "dp", "dq", "qi"];
    const jwk = { kty: kind === "EC" ? "EC" : kind, crv: kind === "RSA" ? undefined : param };
    names.forEach((n, i) => { if (m[i]) jwk[n] = Buffer.from(m[i]).toString("base64url"); });
    return guard("DataError", () => {
      if (!jwk.d) return derOf(checkRsaSize(nodeCrypto.createPublicKey({ key: jwk, format: "jwk" })));
      const k = checkRsaSize(nodeCrypto.createPrivateKey({ key: jwk, format: "jwk" }));
      // Node ignores the public members of a private JWK; Web Crypto needs them to match.
      const back = k.export({ format: "jwk" });
      if (kind === "EC") {
        const point = nodeCrypto.createECDH(CURVE[param]);
        point.setPrivateKey(b64(jwk.d));
        const p = point.getPublicKey();
        const n = (p.length - 1) / 2;
        back.x = p.subarray(1, 1 + n).toString("base64url");
        back.y = p.subarray(1 + n).toString("base64url");
      }
      for (const m of ["x", "y", "n", "e"]) if (jwk[m] !== undefined && back[m] !== jwk[m]) throw fail("DataError", `JWK ${m} does not match d`);
      return derOf(k);
    });
  },
  rsaInfo(d, isPrivate) {
    const k = isPrivate ? priv(d) : pub(d);
    const j = k.export({ format: "jwk" });
    return [k.asymmetricKeyDetails.modulusLength, u8(b64(j.e))];
  },
  sign(alg, param, h, salt, der, d) {
    const k = priv(der);
    if (alg === "Ed25519") return u8(nodeCrypto.sign(null, d, k));
    const opts = { key: k, dsaEncoding: "ieee-p1363" };
    if (alg === "RSA-PSS") Object.assign(opts, { padding: nodeCrypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: salt });
    return guard("OperationError", () => u8(nodeCrypto.sign(hashOf(h), d, opts)));
  },
  verify(alg, param, h, salt, [der, sig, d]) {
    const k = pub(der);
    if (alg === "Ed25519") return sig.length === 64 && nodeCrypto.verify(null, d, k, sig);
    const opts = { key: k, dsaEncoding: "ieee-p1363" };
    if (alg === "RSA-PSS") Object.assign(opts, { padding: nodeCrypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: salt });
    try { return nodeCrypto.verify(hashOf(h), d, opts, sig); } catch { return false; }
  },
  deriveBits(alg, param, sk, pk) {
    return guard("OperationError", () => u8(nodeCrypto.diffieHellman({ privateKey: priv(sk), publicKey: pub(pk) })));
  },
  rsaOaep(enc, h, label, der, d) {
    const opts = { padding: nodeCrypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: hashOf(h), oaepLabel: label.length ? label : undefined };
    return guard("OperationError", () => u8(enc ? nodeCrypto.publicEncrypt({ key: pub(der), ...opts }, d) : nodeCrypto.privateDecrypt({ key: priv(der), ...opts }, d)));
  },
};
