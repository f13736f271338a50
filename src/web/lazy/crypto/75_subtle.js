// Web Crypto, part 2: the algorithms (HMAC, AES-CTR/CBC/GCM/KW, PBKDF2, HKDF, ECDSA, ECDH,
// Ed25519, X25519, RSASSA-PKCS1-v1_5, RSA-PSS, RSA-OAEP) and SubtleCrypto. CryptoKey and
// the normalisation helpers are in 74_cryptokey.js; crypto.subtle is attached in
// 80_globals.js.
// Evaluated on first use as a function of the prelude's private objects (src/engine/lazy.rs).
((native, internal) => {
  "use strict";
  const { requireArgs, tag, defineGlobal, toDOMString, utf8Encode, utf8Decode } = internal;
  const {
    N, CREATE, notSupported, syntaxError, invalidAccess, dataError, operationError, call, copyBytes, enforceRange,
    slot, isKey, makeKey, normalize, buf, checkUsages, intersect, b64urlEncode, b64urlDecode, toJwkDict, toUsages,
    checkJwk, jwkCommon, truncateBits,
  } = internal.webCrypto;

  // ---- algorithm families ----
  // Each has whichever of generate, import, export, sign, verify, encrypt, decrypt,
  // deriveBits, keyLength, wrap, unwrap it supports.

  const HASH_BLOCK_BITS = { "SHA-1": 512, "SHA-256": 512, "SHA-384": 1024, "SHA-512": 1024 };
  const HASH_SUFFIX = { "SHA-1": "1", "SHA-256": "256", "SHA-384": "384", "SHA-512": "512" };

  const randomBytes = (n) => { const b = new Uint8Array(n); internal.native.randomFill(b); return b; };

  const HMAC = {
    generate(alg, extractable, usages) {
      checkUsages(usages, ["sign", "verify"], "HMAC");
      let length = alg.length;
      if (length === undefined) length = HASH_BLOCK_BITS[alg.hash.name];
      else if (length === 0) throw operationError("HMAC key length must not be zero.");
      const bytes = randomBytes(Math.ceil(length / 8));
      if (length % 8 !== 0) bytes[bytes.length - 1] &= 0xff << (8 - (length % 8));
      return makeKey("secret", extractable, { name: "HMAC", length, hash: { name: alg.hash.name } }, usages, bytes, { hash: alg.hash.name });
    },
    import(format, keyData, alg, extractable, usages) {
      checkUsages(usages, ["sign", "verify"], "HMAC");
      let bytes;
      const hash = alg.hash.name;
      if (format === "raw") {
        bytes = keyData;
      } else if (format === "jwk") {
        checkJwk(keyData, "oct", usages, extractable, "sig");
        if (keyData.k === undefined) throw dataError("JWK k is required.");
        bytes = b64urlDecode(keyData.k, "k");
        if (keyData.alg !== undefined && keyData.alg !== `HS${HASH_SUFFIX[hash]}`) throw dataError("JWK alg does not match the hash.");
      } else {
        throw notSupported(`HMAC keys cannot be imported as ${format}.`);
      }
      let length = bytes.length * 8;
      if (length === 0) throw dataError("HMAC key data must not be empty.");
      if (alg.length !== undefined) {
        if (alg.length > length || alg.length <= length - 8) throw dataError("HMAC length does not match the key data.");
        length = alg.length;
      }
      return makeKey("secret", extractable, { name: "HMAC", length, hash: { name: hash } }, usages, bytes, { hash });
    },
    export(format, s) {
      if (format === "raw") return buf(s.material.slice());
      if (format === "jwk") return { kty: "oct", alg: `HS${HASH_SUFFIX[s.data.hash]}`, k: b64urlEncode(s.material), ...jwkCommon(s) };
      throw notSupported(`HMAC keys cannot be exported as ${format}.`);
    },
    sign: (alg, s, data) => call(N.hmacSign, s.data.hash, s.material, data),
    verify: (alg, s, sig, data) => call(N.hmacVerify, s.data.hash, s.material, data, sig),
    keyLength(alg) {
      if (alg.length === undefined) return HASH_BLOCK_BITS[alg.hash.name];
      if (alg.length === 0) throw new TypeError("HMAC length must not be zero.");
      return alg.length;
    },
  };

  const AES_JWK = { "AES-CTR": "CTR", "AES-CBC": "CBC", "AES-GCM": "GCM", "AES-KW": "KW" };
  const aesUsages = (name) => name === "AES-KW" ? ["wrapKey", "unwrapKey"] : ["encrypt", "decrypt", "wrapKey", "unwrapKey"];
  const aesLength = (length) => {
    if (length !== 128 && length !== 192 && length !== 256) throw operationError("AES key length must be 128, 192 or 256 bits.");
    return length;
  };
  const makeAes = (name) => ({
    generate(alg, extractable, usages) {
      checkUsages(usages, aesUsages(name), name);
      const length = aesLength(alg.length);
      return makeKey("secret", extractable, { name, length }, usages, randomBytes(length / 8), {});
    },
    import(format, keyData, alg, extractable, usages) {
      checkUsages(usages, aesUsages(name), name);
      let bytes;
      if (format === "raw") {
        bytes = keyData;
        if (![16, 24, 32].includes(bytes.length)) throw dataError("AES key data must be 128, 192 or 256 bits.");
      } else if (format === "jwk") {
        checkJwk(keyData, "oct", usages, extractable, "enc");
        if (keyData.k === undefined) throw dataError("JWK k is required.");
        bytes = b64urlDecode(keyData.k, "k");
        if (![16, 24, 32].includes(bytes.length)) throw dataError("AES key data must be 128, 192 or 256 bits.");
        if (keyData.alg !== undefined && keyData.alg !== `A${bytes.length * 8}${AES_JWK[name]}`) throw dataError("JWK alg does not match the key.");
      } else {
        throw notSupported(`${name} keys cannot be imported as ${format}.`);
      }
      return makeKey("secret", extractable, { name, length: bytes.length * 8 }, usages, bytes, {});
    },
    export(format, s) {
      if (format === "raw") return buf(s.material.slice());
      if (format === "jwk") return { kty: "oct", alg: `A${s.material.length * 8}${AES_JWK[name]}`, k: b64urlEncode(s.material), ...jwkCommon(s) };
      throw notSupported(`${name} keys cannot be exported as ${format}.`);
    },
    keyLength: (alg) => aesLength(alg.length),
  });
  const AES_CTR = {
    ...makeAes("AES-CTR"),
    encrypt(alg, s, data) {
      if (alg.counter.length !== 16) throw operationError("AES-CTR counter must be 16 bytes.");
      if (alg.length === 0 || alg.length > 128) throw operationError("AES-CTR length must be between 1 and 128.");
      return call(N.aesCtr, s.material, alg.counter, alg.length, data);
    },
  };
  AES_CTR.decrypt = AES_CTR.encrypt;
  const AES_CBC = {
    ...makeAes("AES-CBC"),
    encrypt(alg, s, data) {
      if (alg.iv.length !== 16) throw operationError("AES-CBC iv must be 16 bytes.");
      return call(N.aesCbc, true, s.material, alg.iv, data);
    },
    decrypt(alg, s, data) {
      if (alg.iv.length !== 16) throw operationError("AES-CBC iv must be 16 bytes.");
      return call(N.aesCbc, false, s.material, alg.iv, data);
    },
  };
  const gcm = (encrypt) => (alg, s, data) => {
    const tagLength = alg.tagLength === undefined ? 128 : alg.tagLength;
    if (![32, 64, 96, 104, 112, 120, 128].includes(tagLength)) throw operationError("AES-GCM tagLength is not valid.");
    if (!encrypt && data.length < tagLength / 8) throw operationError("The ciphertext is shorter than the tag.");
    return call(N.aesGcm, encrypt, s.material, alg.iv, alg.additionalData ?? new Uint8Array(0), tagLength, data);
  };
  const AES_GCM = { ...makeAes("AES-GCM"), encrypt: gcm(true), decrypt: gcm(false) };
  const AES_KW = {
    ...makeAes("AES-KW"),
    wrap(alg, s, data) {
      if (data.length % 8 !== 0) throw operationError("AES-KW wraps data that is a multiple of 64 bits.");
      return call(N.aesKw, true, s.material, data);
    },
    unwrap: (alg, s, data) => call(N.aesKw, false, s.material, data),
  };

  const makeKdf = (name) => ({
    import(format, keyData, alg, extractable, usages) {
      if (format !== "raw") throw notSupported(`${name} keys can only be imported as raw.`);
      checkUsages(usages, ["deriveKey", "deriveBits"], name);
      if (extractable) throw syntaxError(`${name} keys cannot be extractable.`);
      return makeKey("secret", false, { name }, usages, keyData, {});
    },
    keyLength: () => null,
  });
  const bitLength = (length, name) => {
    if (length === null) throw operationError(`${name} needs a length.`);
    if (length % 8 !== 0) throw operationError(`${name} length must be a multiple of 8.`);
    return length / 8;
  };
  const PBKDF2 = {
    ...makeKdf("PBKDF2"),
    deriveBits(alg, s, length) {
      // Unlike HKDF, PBKDF2 refuses a zero length.
      if (length === 0) throw operationError("PBKDF2 length must not be zero.");
      const n = bitLength(length, "PBKDF2");
      if (alg.iterations === 0) throw operationError("PBKDF2 iterations must be greater than 0.");
      return call(N.pbkdf2, alg.hash.name, s.material, alg.salt, alg.iterations, n);
    },
  };
  const HKDF = {
    ...makeKdf("HKDF"),
    deriveBits: (alg, s, length) => call(N.hkdf, alg.hash.name, s.material, alg.salt, alg.info, bitLength(length, "HKDF")),
  };

  // Asymmetric keys. `kind`/`param` pick the native family ("EC" + curve, "OKP" + name,
  // "RSA"); `usages` says which usages the public and private halves take.
  function makePair(name, kind, param, alg, extractable, usages, pub, priv, data, pkcs8, spki) {
    const publicKey = makeKey("public", true, alg(), intersect(usages, pub), spki, data);
    const privateKey = makeKey("private", extractable, alg(), intersect(usages, priv), pkcs8, data);
    return { publicKey, privateKey };
  }
  function importAsym(format, keyData, extractable, usages, o) {
    // o: { name, kind, param, pub, priv, jwkKty, use, jwkCheck(jwk), jwkMembers(jwk) -> [members, private] }
    let der, isPrivate;
    if (format === "jwk") {
      checkUsages(usages, keyData.d !== undefined ? o.priv : o.pub, o.name);
      checkJwk(keyData, o.jwkKty, usages, extractable, o.use);
      o.jwkCheck(keyData);
      isPrivate = keyData.d !== undefined;
      der = call(N.jwkImport, o.kind, o.param, o.jwkMembers(keyData));
    } else if (format === "raw" || format === "spki" || format === "pkcs8") {
      if (format === "raw" && !o.raw) throw notSupported(`${o.name} keys cannot be imported as raw.`);
      checkUsages(usages, format === "pkcs8" ? o.priv : o.pub, o.name);
      [der, isPrivate] = call(N.importKey, o.kind, o.param, format, keyData);
    } else {
      throw notSupported(`${o.name} keys cannot be imported as ${format}.`);
    }
    return { der, isPrivate };
  }
  function exportAsym(format, s, o) {
    const isPrivate = s.type === "private";
    switch (format) {
      case "spki":
        if (isPrivate) throw invalidAccess("Only public keys export as spki.");
        return buf(s.material.slice());
      case "pkcs8":
        if (!isPrivate) throw invalidAccess("Only private keys export as pkcs8.");
        return buf(s.material.slice());
      case "raw":
        if (!o.raw) throw notSupported(`${o.name} keys cannot be exported as raw.`);
        if (isPrivate) throw invalidAccess("Only public keys export as raw.");
        return buf(call(N.exportRaw, o.kind, o.param, s.material, false));
      case "jwk": return { ...o.jwkOut(call(N.jwkExport, o.kind, o.param, s.material, isPrivate), s), ...jwkCommon(s) };
    }
    throw notSupported(`${o.name} keys cannot be exported as ${format}.`);
  }
  const member = (jwk, m) => (jwk[m] === undefined ? null : b64urlDecode(jwk[m], m));
  const need = (jwk, m) => {
    if (jwk[m] === undefined) throw dataError(`JWK ${m} is required.`);
    return b64urlDecode(jwk[m], m);
  };

  const CURVES = ["P-256", "P-384"];
  const curveOf = (namedCurve) => {
    if (!CURVES.includes(namedCurve)) throw notSupported(`Unsupported namedCurve: ${namedCurve}`);
    return namedCurve;
  };
  const makeEc = (name) => {
    const ecdsa = name === "ECDSA";
    const pub = ecdsa ? ["verify"] : [];
    const priv = ecdsa ? ["sign"] : ["deriveKey", "deriveBits"];
    const opts = (curve) => ({
      name, kind: "EC", param: curve, pub, priv, raw: true, jwkKty: "EC", use: ecdsa ? "sig" : "enc",
      jwkCheck(jwk) {
        if (jwk.crv !== curve) throw dataError("JWK crv does not match namedCurve.");
        if (ecdsa && jwk.alg !== undefined && jwk.alg !== (curve === "P-256" ? "ES256" : "ES384")) {
          throw dataError("JWK alg does not match namedCurve.");
        }
      },
      jwkMembers: (jwk) => [member(jwk, "d"), need(jwk, "x"), need(jwk, "y")],
      // Members and their order as deno exports them: the spec sets no alg, deno sets
      // ES256/ES384 (ECDSA) or "ECDH", and apps that return exported JWKs should answer as
      // they do under deno.
      jwkOut: ([x, y, d]) => ({
        kty: "EC", alg: ecdsa ? (curve === "P-256" ? "ES256" : "ES384") : "ECDH", crv: curve,
        ...(d ? { d: b64urlEncode(d) } : {}), x: b64urlEncode(x), y: b64urlEncode(y),
      }),
    });
    const fam = {
      generate(alg, extractable, usages) {
        checkUsages(usages, [...pub, ...priv], name);
        const curve = curveOf(alg.namedCurve);
        const [pkcs8, spki] = call(N.generateKeyPair, "EC", curve, 0, null);
        return makePair(name, "EC", curve, () => ({ name, namedCurve: curve }), extractable, usages, pub, priv, { curve }, pkcs8, spki);
      },
      import(format, keyData, alg, extractable, usages) {
        const curve = curveOf(alg.namedCurve);
        const { der, isPrivate } = importAsym(format, keyData, extractable, usages, opts(curve));
        return makeKey(isPrivate ? "private" : "public", extractable, { name, namedCurve: curve }, usages, der, { curve });
      },
      export: (format, s) => exportAsym(format, s, opts(s.data.curve)),
    };
    if (ecdsa) {
      fam.sign = (alg, s, data) => {
        if (s.type !== "private") throw invalidAccess("ECDSA signing needs a private key.");
        return call(N.sign, "ECDSA", s.data.curve, alg.hash.name, 0, s.material, data);
      };
      fam.verify = (alg, s, sig, data) => {
        if (s.type !== "public") throw invalidAccess("ECDSA verification needs a public key.");
        return call(N.verify, "ECDSA", s.data.curve, alg.hash.name, 0, [s.material, sig, data]);
      };
    } else {
      fam.deriveBits = (alg, s, length) => agree("ECDH", s, alg.public, length, (p) => {
        if (p.data.curve !== s.data.curve) throw invalidAccess("The public key is on another curve.");
      });
    }
    return fam;
  };
  function agree(name, s, publicKey, length, check) {
    if (s.type !== "private") throw invalidAccess(`${name} needs a private base key.`);
    const p = slot(publicKey);
    if (p.type !== "public") throw invalidAccess(`${name} needs a public key in "public".`);
    if (p.algorithm.name !== s.algorithm.name) throw invalidAccess("The public key is for another algorithm.");
    check(p);
    return truncateBits(call(N.deriveBits, name, s.data.curve ?? name, s.material, p.material), length);
  }

  const makeOkp = (name) => {
    const ed = name === "Ed25519";
    const pub = ed ? ["verify"] : [];
    const priv = ed ? ["sign"] : ["deriveKey", "deriveBits"];
    const opts = {
      name, kind: "OKP", param: name, pub, priv, raw: true, jwkKty: "OKP", use: ed ? "sig" : "enc",
      jwkCheck(jwk) {
        if (jwk.crv !== name) throw dataError(`JWK crv must be "${name}".`);
        if (ed && jwk.alg !== undefined && jwk.alg !== "EdDSA" && jwk.alg !== "Ed25519") throw dataError("JWK alg must be EdDSA.");
      },
      jwkMembers: (jwk) => [member(jwk, "d"), need(jwk, "x")],
      jwkOut: ([x, d]) => ({ kty: "OKP", crv: name, ...(d ? { d: b64urlEncode(d) } : {}), x: b64urlEncode(x) }),
    };
    const fam = {
      generate(alg, extractable, usages) {
        checkUsages(usages, [...pub, ...priv], name);
        const [pkcs8, spki] = call(N.generateKeyPair, "OKP", name, 0, null);
        return makePair(name, "OKP", name, () => ({ name }), extractable, usages, pub, priv, {}, pkcs8, spki);
      },
      import(format, keyData, alg, extractable, usages) {
        const { der, isPrivate } = importAsym(format, keyData, extractable, usages, opts);
        return makeKey(isPrivate ? "private" : "public", extractable, { name }, usages, der, {});
      },
      export: (format, s) => exportAsym(format, s, opts),
    };
    if (ed) {
      fam.sign = (alg, s, data) => {
        if (s.type !== "private") throw invalidAccess("Ed25519 signing needs a private key.");
        return call(N.sign, "Ed25519", name, "SHA-512", 0, s.material, data);
      };
      fam.verify = (alg, s, sig, data) => {
        if (s.type !== "public") throw invalidAccess("Ed25519 verification needs a public key.");
        return call(N.verify, "Ed25519", name, "SHA-512", 0, [s.material, sig, data]);
      };
    } else {
      fam.deriveBits = (alg, s, length) => agree("X25519", s, alg.public, length, () => {});
    }
    return fam;
  };

  const RSA_JWK_ALG = {
    "RSASSA-PKCS1-v1_5": (h) => `RS${HASH_SUFFIX[h]}`,
    "RSA-PSS": (h) => `PS${HASH_SUFFIX[h]}`,
    "RSA-OAEP": (h) => (h === "SHA-1" ? "RSA-OAEP" : `RSA-OAEP-${HASH_SUFFIX[h]}`),
  };
  const RSA_MEMBERS = ["n", "e", "d", "p", "q", "dp", "dq", "qi"];
  const makeRsa = (name) => {
    const oaep = name === "RSA-OAEP";
    const pub = oaep ? ["encrypt", "wrapKey"] : ["verify"];
    const priv = oaep ? ["decrypt", "unwrapKey"] : ["sign"];
    const algOf = (hash, der, isPrivate) => {
      const [modulusLength, publicExponent] = call(N.rsaInfo, der, isPrivate);
      return { name, modulusLength, publicExponent, hash: { name: hash } };
    };
    const opts = (hash) => ({
      name, kind: "RSA", param: "", pub, priv, raw: false, jwkKty: "RSA", use: oaep ? "enc" : "sig",
      jwkCheck(jwk) {
        if (jwk.alg !== undefined && jwk.alg !== RSA_JWK_ALG[name](hash)) throw dataError("JWK alg does not match the hash.");
        if (jwk.oth !== undefined) throw notSupported("Multi-prime RSA keys are not supported.");
      },
      jwkMembers(jwk) {
        const m = [need(jwk, "n"), need(jwk, "e")];
        if (jwk.d !== undefined) for (const k of RSA_MEMBERS.slice(2)) m.push(need(jwk, k));
        return m;
      },
      jwkOut: (m) => {
        const out = { kty: "RSA", alg: RSA_JWK_ALG[name](hash) };
        m.forEach((v, i) => { out[RSA_MEMBERS[i]] = b64urlEncode(v); });
        return out;
      },
    });
    const fam = {
      generate(alg, extractable, usages) {
        checkUsages(usages, [...pub, ...priv], name);
        const [pkcs8, spki] = call(N.generateKeyPair, "RSA", "", alg.modulusLength, alg.publicExponent);
        const hash = alg.hash.name;
        return makePair(name, "RSA", "", () => algOf(hash, spki, false), extractable, usages, pub, priv, { hash }, pkcs8, spki);
      },
      import(format, keyData, alg, extractable, usages) {
        const hash = alg.hash.name;
        const { der, isPrivate } = importAsym(format, keyData, extractable, usages, opts(hash));
        return makeKey(isPrivate ? "private" : "public", extractable, algOf(hash, der, isPrivate), usages, der, { hash });
      },
      export: (format, s) => exportAsym(format, s, opts(s.data.hash)),
    };
    if (oaep) {
      fam.encrypt = (alg, s, data) => {
        if (s.type !== "public") throw invalidAccess("RSA-OAEP encryption needs a public key.");
        return call(N.rsaOaep, true, s.data.hash, alg.label ?? new Uint8Array(0), s.material, data);
      };
      fam.decrypt = (alg, s, data) => {
        if (s.type !== "private") throw invalidAccess("RSA-OAEP decryption needs a private key.");
        return call(N.rsaOaep, false, s.data.hash, alg.label ?? new Uint8Array(0), s.material, data);
      };
    } else {
      fam.sign = (alg, s, data) => {
        if (s.type !== "private") throw invalidAccess(`${name} signing needs a private key.`);
        return call(N.sign, name, "", s.data.hash, alg.saltLength ?? 0, s.material, data);
      };
      fam.verify = (alg, s, sig, data) => {
        if (s.type !== "public") throw invalidAccess(`${name} verification needs a public key.`);
        return call(N.verify, name, "", s.data.hash, alg.saltLength ?? 0, [s.material, sig, data]);
      };
    }
    return fam;
  };

  const FAMILIES = {
    HMAC, "AES-CTR": AES_CTR, "AES-CBC": AES_CBC, "AES-GCM": AES_GCM, "AES-KW": AES_KW, PBKDF2, HKDF,
    ECDSA: makeEc("ECDSA"), ECDH: makeEc("ECDH"), Ed25519: makeOkp("Ed25519"), X25519: makeOkp("X25519"),
    "RSASSA-PKCS1-v1_5": makeRsa("RSASSA-PKCS1-v1_5"), "RSA-PSS": makeRsa("RSA-PSS"), "RSA-OAEP": makeRsa("RSA-OAEP"),
  };

  // ---- SubtleCrypto ----

  const FORMATS = ["raw", "spki", "pkcs8", "jwk"];
  const toFormat = (v) => {
    const f = toDOMString(v);
    if (!FORMATS.includes(f)) throw new TypeError(`"${f}" is not a valid KeyFormat.`);
    return f;
  };
  const checkSubtle = (v) => { if (v !== subtle) throw new TypeError("Illegal invocation: not a SubtleCrypto."); };
  const toKey = (v, what) => { if (!isKey(v)) throw new TypeError(`${what} is not a CryptoKey.`); return v; };
  function checkKeyFor(s, alg, usage) {
    if (s.algorithm.name !== alg.name) throw invalidAccess(`The key is not a ${alg.name} key.`);
    if (!s.usages.includes(usage)) throw invalidAccess(`The key does not allow "${usage}".`);
  }
  function checkCreated(result) {
    const k = isKey(result) ? slot(result) : slot(result.privateKey);
    if ((k.type === "secret" || k.type === "private") && k.usages.length === 0) {
      throw syntaxError("A secret or private key needs at least one usage.");
    }
    return result;
  }
  function importWith(format, keyData, alg, extractable, usages) {
    if (format === "jwk") keyData = toJwkDict(keyData);
    return checkCreated(FAMILIES[alg.name].import(format, keyData, alg, extractable, usages));
  }
  function exportWith(format, key) {
    const s = slot(key);
    const fam = FAMILIES[s.algorithm.name];
    if (fam.export === undefined) throw notSupported(`${s.algorithm.name} keys cannot be exported.`);
    if (!s.extractable) throw invalidAccess("The key is not extractable.");
    return fam.export(format, s);
  }
  function normalizeWithFallback(alg, op, fallback) {
    try {
      return [normalize(alg, op), true];
    } catch (e) {
      if (!(internal.isDOMException(e) && e.name === "NotSupportedError")) throw e;
      return [normalize(alg, fallback), false];
    }
  }

  class SubtleCrypto {
    constructor(key = undefined) { if (key !== CREATE) throw new TypeError("Illegal constructor."); }

    async digest(algorithm, data) {
      checkSubtle(this);
      requireArgs(arguments.length, 2, "SubtleCrypto.digest");
      const bytes = copyBytes(data, "data");
      const alg = normalize(algorithm, "digest");
      return buf(call(N.digest, alg.name, bytes));
    }

    async encrypt(algorithm, key, data) {
      checkSubtle(this);
      requireArgs(arguments.length, 3, "SubtleCrypto.encrypt");
      toKey(key, "key");
      const bytes = copyBytes(data, "data");
      const alg = normalize(algorithm, "encrypt");
      const s = slot(key);
      checkKeyFor(s, alg, "encrypt");
      return buf(FAMILIES[alg.name].encrypt(alg, s, bytes));
    }

    async decrypt(algorithm, key, data) {
      checkSubtle(this);
      requireArgs(arguments.length, 3, "SubtleCrypto.decrypt");
      toKey(key, "key");
      const bytes = copyBytes(data, "data");
      const alg = normalize(algorithm, "decrypt");
      const s = slot(key);
      checkKeyFor(s, alg, "decrypt");
      return buf(FAMILIES[alg.name].decrypt(alg, s, bytes));
    }

    async sign(algorithm, key, data) {
      checkSubtle(this);
      requireArgs(arguments.length, 3, "SubtleCrypto.sign");
      toKey(key, "key");
      const bytes = copyBytes(data, "data");
      const alg = normalize(algorithm, "sign");
      const s = slot(key);
      checkKeyFor(s, alg, "sign");
      return buf(FAMILIES[alg.name].sign(alg, s, bytes));
    }

    async verify(algorithm, key, signature, data) {
      checkSubtle(this);
      requireArgs(arguments.length, 4, "SubtleCrypto.verify");
      toKey(key, "key");
      const sig = copyBytes(signature, "signature");
      const bytes = copyBytes(data, "data");
      const alg = normalize(algorithm, "verify");
      const s = slot(key);
      checkKeyFor(s, alg, "verify");
      return FAMILIES[alg.name].verify(alg, s, sig, bytes);
    }

    async generateKey(algorithm, extractable, keyUsages) {
      checkSubtle(this);
      requireArgs(arguments.length, 3, "SubtleCrypto.generateKey");
      extractable = Boolean(extractable);
      const usages = toUsages(keyUsages);
      const alg = normalize(algorithm, "generateKey");
      return checkCreated(FAMILIES[alg.name].generate(alg, extractable, usages));
    }

    async deriveKey(algorithm, baseKey, derivedKeyType, extractable, keyUsages) {
      checkSubtle(this);
      requireArgs(arguments.length, 5, "SubtleCrypto.deriveKey");
      toKey(baseKey, "baseKey");
      extractable = Boolean(extractable);
      const usages = toUsages(keyUsages);
      const alg = normalize(algorithm, "deriveBits");
      const derived = normalize(derivedKeyType, "importKey");
      const lengthAlg = normalize(derivedKeyType, "get key length");
      const s = slot(baseKey);
      checkKeyFor(s, alg, "deriveKey");
      const length = FAMILIES[lengthAlg.name].keyLength(lengthAlg);
      const secret = FAMILIES[alg.name].deriveBits(alg, s, length);
      return importWith("raw", secret, derived, extractable, usages);
    }

    async deriveBits(algorithm, baseKey, length = null) {
      checkSubtle(this);
      requireArgs(arguments.length, 2, "SubtleCrypto.deriveBits");
      toKey(baseKey, "baseKey");
      if (length !== null && length !== undefined) length = enforceRange(length, 0xffffffff, "length");
      else length = null;
      const alg = normalize(algorithm, "deriveBits");
      const s = slot(baseKey);
      checkKeyFor(s, alg, "deriveBits");
      return buf(FAMILIES[alg.name].deriveBits(alg, s, length));
    }

    async importKey(format, keyData, algorithm, extractable, keyUsages) {
      checkSubtle(this);
      requireArgs(arguments.length, 5, "SubtleCrypto.importKey");
      format = toFormat(format);
      let data = keyData;
      if (format !== "jwk") data = copyBytes(keyData, "keyData");
      else if (keyData === null || typeof keyData !== "object") throw new TypeError("keyData is not a JsonWebKey.");
      extractable = Boolean(extractable);
      const usages = toUsages(keyUsages);
      const alg = normalize(algorithm, "importKey");
      return importWith(format, data, alg, extractable, usages);
    }

    async exportKey(format, key) {
      checkSubtle(this);
      requireArgs(arguments.length, 2, "SubtleCrypto.exportKey");
      format = toFormat(format);
      toKey(key, "key");
      return exportWith(format, key);
    }

    async wrapKey(format, key, wrappingKey, wrapAlgorithm) {
      checkSubtle(this);
      requireArgs(arguments.length, 4, "SubtleCrypto.wrapKey");
      format = toFormat(format);
      toKey(key, "key");
      toKey(wrappingKey, "wrappingKey");
      const [alg, isWrap] = normalizeWithFallback(wrapAlgorithm, "wrapKey", "encrypt");
      const ws = slot(wrappingKey);
      checkKeyFor(ws, alg, "wrapKey");
      const exported = exportWith(format, key);
      const bytes = format === "jwk" ? utf8Encode(JSON.stringify(exported)) : new Uint8Array(exported);
      const fam = FAMILIES[alg.name];
      return buf(isWrap ? fam.wrap(alg, ws, bytes) : fam.encrypt(alg, ws, bytes));
    }

    async unwrapKey(format, wrappedKey, unwrappingKey, unwrapAlgorithm, unwrappedKeyAlgorithm, extractable, keyUsages) {
      checkSubtle(this);
      requireArgs(arguments.length, 7, "SubtleCrypto.unwrapKey");
      format = toFormat(format);
      const wrapped = copyBytes(wrappedKey, "wrappedKey");
      toKey(unwrappingKey, "unwrappingKey");
      extractable = Boolean(extractable);
      const usages = toUsages(keyUsages);
      const [alg, isWrap] = normalizeWithFallback(unwrapAlgorithm, "unwrapKey", "decrypt");
      const keyAlg = normalize(unwrappedKeyAlgorithm, "importKey");
      const us = slot(unwrappingKey);
      checkKeyFor(us, alg, "unwrapKey");
      const fam = FAMILIES[alg.name];
      const bytes = isWrap ? fam.unwrap(alg, us, wrapped) : fam.decrypt(alg, us, wrapped);
      let data = bytes;
      if (format === "jwk") {
        try {
          data = JSON.parse(utf8Decode(bytes, false, false));
        } catch {
          throw dataError("The unwrapped key is not a JSON Web Key.");
        }
        if (data === null || typeof data !== "object") throw dataError("The unwrapped key is not a JSON Web Key.");
      }
      return importWith(format, data, keyAlg, extractable, usages);
    }
  }
  tag(SubtleCrypto, "SubtleCrypto");
  for (const m of ["digest", "encrypt", "decrypt", "sign", "verify", "generateKey", "deriveKey", "deriveBits",
    "importKey", "exportKey", "wrapKey", "unwrapKey"]) {
    Object.defineProperty(SubtleCrypto.prototype, m, { enumerable: true });
  }
  const subtle = new SubtleCrypto(CREATE);

  internal.subtle = subtle;
  defineGlobal("SubtleCrypto", SubtleCrypto);
});
