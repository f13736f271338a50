// Web API conformance tests: crypto.subtle (Web Cryptography API) with RFC/NIST known
// answers, import/export round trips, and the spec's errors.
import { assert, assertEq, assertJson, assertRejects, assertThrows, sameBytes } from "./helpers.js";

const subtle = crypto.subtle;
const hex = (b) => Array.from(new Uint8Array(b), (x) => x.toString(16).padStart(2, "0")).join("");
const unhex = (s) => new Uint8Array(s.match(/../g).map((x) => parseInt(x, 16)));
const utf8 = (s) => new TextEncoder().encode(s);
const unb64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
const b64url = (b) => btoa(String.fromCharCode(...b)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
const rejectsDom = (p, name) => assertRejects(p, undefined, name);

// Keys and an RS256 signature of "hello jose" made with OpenSSL 3.
const rsa_p8 = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCr3yfYcCmqVSFY6WbWJfAsMMdxpVQfV5zITpT3GjYXdKelgj/4FZsxP4O1BRaR+D517tOworb2+epah1ExGmaxhq6OL4Nzl/EL8AnvrUFyjWPGy+V13bwHCCyyqCycUvjzqPWSQw/TYjxXItxfKWtMFPR+0u0sJP8/fk1zyr9BmToegAL1yhZqRxqXlZgM4jAELS5KKjd+BZNRNxHbWmDipvHj0iAjKlh8cfmSEaF4jzEddgN8mlCWVKl/rDic8rme7PvCfcq1RtM0zJMB3Qk9Wn01sQRqLfvyrKoKhMl5yBCpzany+F5Xgs5CbFH411ZOu1uhzjFJgy2C6e0UhSMNAgMBAAECggEAPiOf5dZjkgRWWq2EMy+jPm7iZPnHyM8lzZvvqslMvj08cY/+bcTuB6e1iCiPSPYuKvhOjAHAUdn4e4OJ/M1VTKDrklemWJAaI91E0mVbEL4C0XidfPhOh2JSusMn4drzzDCNnLRnT98n/r8JWtSASREYdpPvEPNNX5jcCt3GOUJDvdrJ+3RzS39Dg3oFobqQWSLX9/e3odfFxGUnAUMSE9uR2d9/Rhut3lDhD0bCSIonr3rIf9eWIH7lYa5HTho/0FCJxSxksGbVWrlMu1EDHh/vYPtuPFzw0GDBupru0djqD0qtT25yN411AQ6MtEo42mFNUN8Hi6EslSoy81poBwKBgQDSr2v6+NO+1cS1DnP5yjyW7KtOvdq553Wpo0p2Va0V+Yc06ctS7NPpDxyWEi6JnZ8TkMy4ZrtJgMpORVFo1NFqFxY0Dw8G3AUappt/w0CLDij8feODLlnZ+09cjqpqC/dlWO7CMt9DmS3ba2p6r7bdKK8R47Sqeqq7tjkFbJrtewKBgQDQ1p1RBDZuDawgsbNgXaT511r3WKt7WHoU7UEACjjTO7yV+WFE2fOTvtUS8RnOE1eH30EacC1Y/WdUmqlefYFE3yCvbU/Kd+vmgq2cNqgimIBUhjlvtibeigv+mpbWKJyZcYui4LwZsKmi/GT/wSbFQfbgnwzVIv3YqwWpnh9XFwKBgBPBMQ3CQRB2uNAFP+ifBtlb7aAfex/NTSIP1o6L8APMdtoGRfNLk38Z1KNZpxVuOxk5jYiI0WzN76oxI7YBpnUdHw7Yjp8lCDF8h74OD8I6HKu4HhoRwYkH4GQcWGxDHPpawWBiJr8O4NbfFofUbAAGrYuu3yTRBas+JdCVY117AoGACk1cC2Aa00kHYcGCaNGVzuFp0mPkabxOoXOmzjqy3PDId9mKi9v4oSQ73KhaLolTuxcvXf+ErSwrCchrbIbidqRPN3g8BG/wCjoOGHO1zacaRZEtii5BMp86wj+cC0qLlyI70jgl71qAs9KhpOBBal+7rw8JkgYc4bBmIhzzzNcCgYEAt46K7PTbxE50R5sTSo73UYVoRY5wZKuKV//zEB1wBoPMgpqecwSwkc23G3fbITNkfojwd3HTBv/EWzIVdMstgUCeouGP4uH632bqzlIKvYVgsGAn83QV2QDsW4CuphfRiNnEpvqnfnzZxUQ9ZkLRf5qUvi0RmIiZifu097sqAgk=";
const rsa_spki = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAq98n2HApqlUhWOlm1iXwLDDHcaVUH1ecyE6U9xo2F3SnpYI/+BWbMT+DtQUWkfg+de7TsKK29vnqWodRMRpmsYauji+Dc5fxC/AJ761Bco1jxsvldd28BwgssqgsnFL486j1kkMP02I8VyLcXylrTBT0ftLtLCT/P35Nc8q/QZk6HoAC9coWakcal5WYDOIwBC0uSio3fgWTUTcR21pg4qbx49IgIypYfHH5khGheI8xHXYDfJpQllSpf6w4nPK5nuz7wn3KtUbTNMyTAd0JPVp9NbEEai378qyqCoTJecgQqc2p8vheV4LOQmxR+NdWTrtboc4xSYMtguntFIUjDQIDAQAB";
const rsa_sig = "edwbCCre78e4Cbe6UoiX454gaYOuNJ638vrVHFu1hvOxZMI8bI7ID8ikzza7cFWA5Ip1XKBRUBipeFDW7888iXm9dOd1YN5rTObVqnfaLVMX2g8lQsCdvhMppW+HM2mKKr+Dk8NuxjroTF9PDenEtB/qeQmCBrKyedqQTRwrtpO+h/NPMfELkfc4kcvOzf8s6CyfGLWt62LylkzIFFoTwEXG0Sr39+WJ475lw4lhFTtH6doRty9hXDBUrqMve6+q+uc35NTR9CuaE505FoES0TXFgUBlwIL6Xupb7wXR4SH8CBp4GEHIEvdu4k4CWxGGznzhJlh9swE7UIG7+I4osg==";
const ec_p8 = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQglHa8gLrDtLI4Uu8d/GgGGb+pUgGZT0Juls0gheqnzTOhRANCAASen+k3aSVMyel+fFWJoF5IVM8+yEGN7RM8IORCXQLPweHDKMGDy4gvKRfH0blGRF/2s+MblheOL9AhZbzlWW+g";
const ec_spki = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEnp/pN2klTMnpfnxViaBeSFTPPshBje0TPCDkQl0Cz8HhwyjBg8uILykXx9G5RkRf9rPjG5YXji/QIWW85VlvoA==";

export const tests = [
  ["subtle: SHA digests (FIPS 180 vectors)", async () => {
    assertEq(hex(await subtle.digest("SHA-1", utf8("abc"))), "a9993e364706816aba3e25717850c26c9cd0d89d");
    assertEq(hex(await subtle.digest("sha-256", utf8("abc"))), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assertEq(hex(await subtle.digest({ name: "SHA-384" }, utf8("abc"))), "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7");
    assertEq(hex(await subtle.digest("SHA-512", utf8("abc").buffer)), "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f");
    assertEq(hex(await subtle.digest("SHA-256", new DataView(new ArrayBuffer(0)))), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    const out = await subtle.digest("SHA-256", new Uint8Array(3));
    assert(out instanceof ArrayBuffer, "digest resolves with an ArrayBuffer");
    await rejectsDom(subtle.digest("MD5", new Uint8Array(1)), "NotSupportedError");
    await assertRejects(subtle.digest("SHA-256", "abc"), TypeError);
    await assertRejects(subtle.digest({}, new Uint8Array(1)), TypeError);
    await assertRejects(subtle.digest("SHA-256"), TypeError);
  }],
  ["subtle: CryptoKey and SubtleCrypto interfaces", async () => {
    assertEq(Object.prototype.toString.call(subtle), "[object SubtleCrypto]");
    assert(subtle instanceof SubtleCrypto && crypto.subtle === subtle, "crypto.subtle is the one SubtleCrypto");
    let threw = false;
    try { new CryptoKey(); } catch (e) { threw = e instanceof TypeError; }
    assert(threw, "CryptoKey is not constructible");
    threw = false;
    try { new SubtleCrypto(); } catch (e) { threw = e instanceof TypeError; }
    assert(threw, "SubtleCrypto is not constructible");
    const key = await subtle.generateKey({ name: "HMAC", hash: "SHA-256" }, true, ["verify", "sign"]);
    assertEq(Object.prototype.toString.call(key), "[object CryptoKey]");
    assert(key instanceof CryptoKey, "instanceof CryptoKey");
    assertEq(key.type, "secret");
    assertEq(key.extractable, true);
    assertJson(key.usages, ["verify", "sign"], "usages keep their order");
    assertJson(key.algorithm, { name: "HMAC", length: 512, hash: { name: "SHA-256" } });
    assertEq(key.algorithm, key.algorithm, "algorithm is the same object each time");
    threw = false;
    try { Object.getOwnPropertyDescriptor(CryptoKey.prototype, "type").get.call({}); } catch (e) { threw = e instanceof TypeError; }
    assert(threw, "CryptoKey getters brand-check");
    await assertRejects(subtle.digest.call({}, "SHA-256", new Uint8Array(1)), TypeError);
  }],
  ["subtle: HMAC (RFC 4231 case 2) sign, verify, import, export", async () => {
    const data = utf8("what do ya want for nothing?");
    const k256 = await subtle.importKey("raw", utf8("Jefe"), { name: "HMAC", hash: "SHA-256" }, true, ["sign", "verify"]);
    const sig = await subtle.sign("HMAC", k256, data);
    assertEq(hex(sig), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    assertEq(await subtle.verify("HMAC", k256, sig, data), true);
    assertEq(await subtle.verify("HMAC", k256, sig, utf8("other")), false);
    assertEq(await subtle.verify("HMAC", k256, new Uint8Array(sig).subarray(0, 31), data), false);
    assertEq(k256.algorithm.length, 32);
    const k512 = await subtle.importKey("raw", utf8("Jefe"), { name: "hmac", hash: { name: "SHA-512" } }, false, ["sign"]);
    assertEq(hex(await subtle.sign({ name: "HMAC" }, k512, data)), "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737");
    const jwk = await subtle.exportKey("jwk", k256);
    assertJson(jwk, { kty: "oct", alg: "HS256", k: "SmVmZQ", key_ops: ["sign", "verify"], ext: true });
    const back = await subtle.importKey("jwk", jwk, { name: "HMAC", hash: "SHA-256" }, true, ["verify"]);
    assertEq(await subtle.verify("HMAC", back, sig, data), true);
    assertEq(hex(await subtle.exportKey("raw", back)), hex(utf8("Jefe")));
    await rejectsDom(subtle.importKey("jwk", jwk, { name: "HMAC", hash: "SHA-384" }, true, ["verify"]), "DataError");
    await rejectsDom(subtle.importKey("jwk", { ...jwk, kty: "EC" }, { name: "HMAC", hash: "SHA-256" }, true, ["verify"]), "DataError");
    await rejectsDom(subtle.importKey("jwk", { ...jwk, key_ops: ["verify"] }, { name: "HMAC", hash: "SHA-256" }, true, ["sign"]), "DataError");
    await rejectsDom(subtle.importKey("jwk", { ...jwk, ext: false }, { name: "HMAC", hash: "SHA-256" }, true, ["sign"]), "DataError");
    await rejectsDom(subtle.importKey("raw", new Uint8Array(0), { name: "HMAC", hash: "SHA-256" }, true, ["sign"]), "DataError");
    await rejectsDom(subtle.exportKey("raw", k512), "InvalidAccessError");
    await rejectsDom(subtle.sign("HMAC", back, data), "InvalidAccessError");
    await rejectsDom(subtle.importKey("raw", utf8("k"), { name: "HMAC", hash: "SHA-256" }, true, ["encrypt"]), "SyntaxError");
    await rejectsDom(subtle.importKey("raw", utf8("k"), { name: "HMAC", hash: "SHA-256" }, true, []), "SyntaxError");
    await rejectsDom(subtle.importKey("spki", utf8("k"), { name: "HMAC", hash: "SHA-256" }, true, ["sign"]), "NotSupportedError");
    await assertRejects(subtle.importKey("raw", utf8("k"), { name: "HMAC" }, true, ["sign"]), TypeError);
    await assertRejects(subtle.importKey("raw", utf8("k"), { name: "HMAC", hash: "SHA-256" }, true, ["bogus"]), TypeError);
    await assertRejects(subtle.importKey("bogus", utf8("k"), { name: "HMAC", hash: "SHA-256" }, true, ["sign"]), TypeError);
    const gen = await subtle.generateKey({ name: "HMAC", hash: "SHA-512" }, true, ["sign"]);
    assertEq(gen.algorithm.length, 1024);
    assertEq((await subtle.exportKey("raw", gen)).byteLength, 128);
    await rejectsDom(subtle.generateKey({ name: "HMAC", hash: "SHA-256" }, true, []), "SyntaxError");
  }],
  ["subtle: PBKDF2 (RFC 6070) and HKDF (RFC 5869) deriveBits and deriveKey", async () => {
    const pw = await subtle.importKey("raw", utf8("password"), "PBKDF2", false, ["deriveBits", "deriveKey"]);
    assertJson(pw.algorithm, { name: "PBKDF2" });
    const p1 = await subtle.deriveBits({ name: "PBKDF2", hash: "SHA-1", salt: utf8("salt"), iterations: 1 }, pw, 160);
    assertEq(hex(p1), "0c60c80f961f0e71f3a9b524af6012062fe037a6");
    const p4096 = await subtle.deriveBits({ name: "PBKDF2", hash: "SHA-1", salt: utf8("salt"), iterations: 4096 }, pw, 160);
    assertEq(hex(p4096), "4b007901b765489abead49d926f721d065a429c1");
    await rejectsDom(subtle.deriveBits({ name: "PBKDF2", hash: "SHA-1", salt: utf8("salt"), iterations: 0 }, pw, 160), "OperationError");
    await rejectsDom(subtle.deriveBits({ name: "PBKDF2", hash: "SHA-1", salt: utf8("salt"), iterations: 1 }, pw, 7), "OperationError");
    await rejectsDom(subtle.importKey("raw", utf8("password"), "PBKDF2", true, ["deriveBits"]), "SyntaxError");
    await rejectsDom(subtle.deriveBits({ name: "PBKDF2", hash: "SHA-1", salt: utf8("salt"), iterations: 1 }, pw, 0), "OperationError");
    const ikm = await subtle.importKey("raw", new Uint8Array(22).fill(0x0b), "HKDF", false, ["deriveBits", "deriveKey"]);
    const okm = await subtle.deriveBits({ name: "HKDF", hash: "SHA-256", salt: unhex("000102030405060708090a0b0c"), info: unhex("f0f1f2f3f4f5f6f7f8f9") }, ikm, 336);
    assertEq(hex(okm), "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865");
    await rejectsDom(subtle.deriveBits({ name: "HKDF", hash: "SHA-256", salt: new Uint8Array(0), info: new Uint8Array(0) }, ikm, 256 * 255 + 8), "OperationError");
    await assertRejects(subtle.deriveBits({ name: "HKDF", hash: "SHA-256", salt: new Uint8Array(0) }, ikm, 256), TypeError);
    assertEq((await subtle.deriveBits({ name: "HKDF", hash: "SHA-256", salt: new Uint8Array(0), info: new Uint8Array(0) }, ikm, 0)).byteLength, 0);
    const aes = await subtle.deriveKey({ name: "PBKDF2", hash: "SHA-256", salt: utf8("salt"), iterations: 10 }, pw, { name: "AES-GCM", length: 256 }, true, ["encrypt", "decrypt"]);
    assertJson(aes.algorithm, { name: "AES-GCM", length: 256 });
    const expected = await subtle.deriveBits({ name: "PBKDF2", hash: "SHA-256", salt: utf8("salt"), iterations: 10 }, pw, 256);
    assertEq(hex(await subtle.exportKey("raw", aes)), hex(expected));
    const mac = await subtle.deriveKey({ name: "HKDF", hash: "SHA-256", salt: new Uint8Array(0), info: new Uint8Array(0) }, ikm, { name: "HMAC", hash: "SHA-256", length: 256 }, true, ["sign"]);
    assertJson(mac.algorithm, { name: "HMAC", length: 256, hash: { name: "SHA-256" } });
    await rejectsDom(subtle.deriveKey({ name: "HKDF", hash: "SHA-256", salt: new Uint8Array(0), info: new Uint8Array(0) }, ikm, { name: "AES-GCM", length: 100 }, true, ["encrypt"]), "OperationError");
    const noDerive = await subtle.importKey("raw", utf8("password"), "PBKDF2", false, ["deriveBits"]);
    await rejectsDom(subtle.deriveKey({ name: "PBKDF2", hash: "SHA-256", salt: utf8("s"), iterations: 1 }, noDerive, { name: "AES-GCM", length: 128 }, true, ["encrypt"]), "InvalidAccessError");
  }],
  ["subtle: AES-GCM (NIST test cases 3 and 4)", async () => {
    const key = await subtle.importKey("raw", unhex("feffe9928665731c6d6a8f9467308308"), "AES-GCM", true, ["encrypt", "decrypt"]);
    assertJson(key.algorithm, { name: "AES-GCM", length: 128 });
    const iv = unhex("cafebabefacedbaddecaf888");
    const pt = unhex("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255");
    const ct = "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985";
    const c3 = await subtle.encrypt({ name: "AES-GCM", iv }, key, pt);
    assertEq(hex(c3), ct + "4d5c2af327cd64a62cf35abd2ba6fab4");
    assertEq(hex(await subtle.decrypt({ name: "AES-GCM", iv }, key, c3)), hex(pt));
    const aad = unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
    const c4 = await subtle.encrypt({ name: "AES-GCM", iv, additionalData: aad }, key, pt.subarray(0, 60));
    assertEq(hex(c4), ct.slice(0, 120) + "5bc94fbc3221a5db94fae95ae7121a47");
    const c4short = await subtle.encrypt({ name: "AES-GCM", iv, additionalData: aad, tagLength: 96 }, key, pt.subarray(0, 60));
    assertEq(hex(c4short), ct.slice(0, 120) + "5bc94fbc3221a5db94fae95a");
    assertEq(hex(await subtle.decrypt({ name: "AES-GCM", iv, additionalData: aad, tagLength: 96 }, key, c4short)), hex(pt.subarray(0, 60)));
    const bad = new Uint8Array(c4);
    bad[0] ^= 1;
    await rejectsDom(subtle.decrypt({ name: "AES-GCM", iv, additionalData: aad }, key, bad), "OperationError");
    await rejectsDom(subtle.decrypt({ name: "AES-GCM", iv }, key, c4), "OperationError");
    await rejectsDom(subtle.encrypt({ name: "AES-GCM", iv, tagLength: 100 }, key, pt), "OperationError");
    await assertRejects(subtle.encrypt({ name: "AES-GCM" }, key, pt), TypeError);
    await rejectsDom(subtle.encrypt({ name: "AES-CBC", iv: new Uint8Array(16) }, key, pt), "InvalidAccessError");
    await rejectsDom(subtle.importKey("raw", new Uint8Array(15), "AES-GCM", true, ["encrypt"]), "DataError");
    await rejectsDom(subtle.importKey("raw", new Uint8Array(16), "AES-GCM", true, ["sign"]), "SyntaxError");
    assertJson(await subtle.exportKey("jwk", key), { kty: "oct", alg: "A128GCM", k: "_v_pkoZlcxxtao-UZzCDCA", key_ops: ["encrypt", "decrypt"], ext: true });
    const gen = await subtle.generateKey({ name: "AES-GCM", length: 256 }, false, ["encrypt", "decrypt"]);
    assertEq(gen.extractable, false);
    const rt = await subtle.encrypt({ name: "AES-GCM", iv: new Uint8Array(12) }, gen, utf8("hi"));
    assertEq(new TextDecoder().decode(await subtle.decrypt({ name: "AES-GCM", iv: new Uint8Array(12) }, gen, rt)), "hi");
    await rejectsDom(subtle.generateKey({ name: "AES-GCM", length: 100 }, true, ["encrypt"]), "OperationError");
  }],
  ["subtle: AES-CBC and AES-CTR (SP 800-38A F.2.1, F.5.1)", async () => {
    const raw = unhex("2b7e151628aed2a6abf7158809cf4f3c");
    const cbc = await subtle.importKey("raw", raw, "AES-CBC", false, ["encrypt", "decrypt"]);
    const iv = unhex("000102030405060708090a0b0c0d0e0f");
    const pt = unhex("6bc1bee22e409f96e93d7e117393172a");
    const ct = new Uint8Array(await subtle.encrypt({ name: "AES-CBC", iv }, cbc, pt));
    assertEq(ct.length, 32, "a full padding block follows");
    assertEq(hex(ct.subarray(0, 16)), "7649abac8119b246cee98e9b12e9197d");
    assertEq(hex(await subtle.decrypt({ name: "AES-CBC", iv }, cbc, ct)), hex(pt));
    await rejectsDom(subtle.decrypt({ name: "AES-CBC", iv }, cbc, ct.subarray(0, 16)), "OperationError");
    await rejectsDom(subtle.encrypt({ name: "AES-CBC", iv: new Uint8Array(8) }, cbc, pt), "OperationError");
    const ctr = await subtle.importKey("raw", raw, { name: "AES-CTR" }, false, ["encrypt", "decrypt"]);
    const counter = unhex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff");
    const pt2 = unhex("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51");
    const ct2 = await subtle.encrypt({ name: "AES-CTR", counter, length: 64 }, ctr, pt2);
    assertEq(hex(ct2), "874d6191b620e3261bef6864990db6ce9806f66b7970fdff8617187bb9fffdff");
    assertEq(hex(await subtle.decrypt({ name: "AES-CTR", counter, length: 64 }, ctr, ct2)), hex(pt2));
    await rejectsDom(subtle.encrypt({ name: "AES-CTR", counter, length: 0 }, ctr, pt2), "OperationError");
    await rejectsDom(subtle.encrypt({ name: "AES-CTR", counter: new Uint8Array(8), length: 64 }, ctr, pt2), "OperationError");
    await assertRejects(subtle.encrypt({ name: "AES-CTR", counter, length: 256 }, ctr, pt2), TypeError);
  }],
  ["subtle: AES-KW wrapKey/unwrapKey (RFC 3394 4.1) and JWK wrapping", async () => {
    const kek = await subtle.importKey("raw", unhex("000102030405060708090A0B0C0D0E0F"), "AES-KW", false, ["wrapKey", "unwrapKey"]);
    const key = await subtle.importKey("raw", unhex("00112233445566778899AABBCCDDEEFF"), "AES-GCM", true, ["encrypt"]);
    const wrapped = await subtle.wrapKey("raw", key, kek, "AES-KW");
    assertEq(hex(wrapped), "1fa68b0a8112b447aef34bd8fb5a7b829d3e862371d2cfe5");
    const back = await subtle.unwrapKey("raw", wrapped, kek, "AES-KW", "AES-GCM", true, ["decrypt"]);
    assertJson(back.usages, ["decrypt"]);
    assertEq(hex(await subtle.exportKey("raw", back)), "00112233445566778899aabbccddeeff");
    const bad = new Uint8Array(wrapped);
    bad[3] ^= 1;
    await rejectsDom(subtle.unwrapKey("raw", bad, kek, "AES-KW", "AES-GCM", true, ["decrypt"]), "OperationError");
    await rejectsDom(subtle.encrypt("AES-KW", kek, new Uint8Array(16)), "NotSupportedError");
    // A JWK wrapped with AES-GCM (encrypt/decrypt stand in for wrap/unwrap).
    const wk = await subtle.generateKey({ name: "AES-GCM", length: 128 }, false, ["wrapKey", "unwrapKey"]);
    const hmac = await subtle.importKey("raw", utf8("Jefe"), { name: "HMAC", hash: "SHA-256" }, true, ["sign"]);
    const iv = new Uint8Array(12);
    const w = await subtle.wrapKey("jwk", hmac, wk, { name: "AES-GCM", iv });
    const un = await subtle.unwrapKey("jwk", w, wk, { name: "AES-GCM", iv }, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    assertEq(hex(await subtle.sign("HMAC", un, utf8("what do ya want for nothing?"))), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    const nonExtractable = await subtle.importKey("raw", utf8("Jefe"), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    await rejectsDom(subtle.wrapKey("raw", nonExtractable, kek, "AES-KW"), "InvalidAccessError");
  }],
  ["subtle: ECDSA P-256 (RFC 6979 A.2.5) JWK, pkcs8, spki, raw, ES256", async () => {
    const d = unhex("c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721");
    const x = unhex("60fed4ba255a9d31c961eb74c6356d68c049b8923b61fa6ce669622e60f29fb6");
    const y = unhex("7903fe1008b8bc99a41ae9e95628bc64f2f1b20c2d7e9f5177a3c294d4462299");
    const alg = { name: "ECDSA", namedCurve: "P-256" };
    const jwk = { kty: "EC", crv: "P-256", x: b64url(x), y: b64url(y) };
    const pub = await subtle.importKey("jwk", jwk, alg, true, ["verify"]);
    assertEq(pub.type, "public");
    assertJson(pub.algorithm, { name: "ECDSA", namedCurve: "P-256" });
    const sig = unhex("efd48b2aacb6a8fd1140dd9cd45e81d69d2c877b56aaf991c34d0ea84eaf3716f7cb1c942d657c41d436c7a1b6e29f65f3e900dbb9aff4064dc4ab2f843acda8");
    const ecdsa256 = { name: "ECDSA", hash: "SHA-256" };
    assertEq(await subtle.verify(ecdsa256, pub, sig, utf8("sample")), true, "the RFC's r || s verifies");
    assertEq(await subtle.verify(ecdsa256, pub, sig, utf8("samples")), false);
    assertEq(await subtle.verify(ecdsa256, pub, sig.subarray(0, 63), utf8("sample")), false);
    const priv = await subtle.importKey("jwk", { ...jwk, d: b64url(d) }, alg, true, ["sign"]);
    const mine = await subtle.sign(ecdsa256, priv, utf8("sample"));
    assertEq(mine.byteLength, 64, "raw r || s");
    assertEq(await subtle.verify(ecdsa256, pub, mine, utf8("sample")), true);
    assertEq(hex(await subtle.exportKey("raw", pub)), "04" + hex(x) + hex(y));
    const spki = await subtle.exportKey("spki", pub);
    const pkcs8 = await subtle.exportKey("pkcs8", priv);
    const pub2 = await subtle.importKey("spki", spki, alg, true, ["verify"]);
    const priv2 = await subtle.importKey("pkcs8", pkcs8, alg, true, ["sign"]);
    assertJson(await subtle.exportKey("jwk", priv2), { kty: "EC", alg: "ES256", crv: "P-256", d: b64url(d), x: jwk.x, y: jwk.y, key_ops: ["sign"], ext: true });
    assertJson(await subtle.exportKey("jwk", pub2), { kty: "EC", alg: "ES256", crv: "P-256", x: jwk.x, y: jwk.y, key_ops: ["verify"], ext: true });
    const raw = await subtle.importKey("raw", await subtle.exportKey("raw", pub), alg, true, ["verify"]);
    assertEq(await subtle.verify(ecdsa256, raw, sig, utf8("sample")), true);
    await rejectsDom(subtle.importKey("jwk", { ...jwk, d: b64url(x) }, alg, true, ["sign"]), "DataError");
    await rejectsDom(subtle.importKey("jwk", { ...jwk, alg: "ES384" }, alg, true, ["verify"]), "DataError");
    await rejectsDom(subtle.importKey("jwk", jwk, { name: "ECDSA", namedCurve: "P-384" }, true, ["verify"]), "DataError");
    await rejectsDom(subtle.importKey("spki", spki, alg, true, ["sign"]), "SyntaxError");
    await rejectsDom(subtle.importKey("spki", spki, { name: "ECDSA", namedCurve: "P-384" }, true, ["verify"]), "DataError");
    await rejectsDom(subtle.importKey("pkcs8", spki, alg, true, ["sign"]), "DataError");
    await rejectsDom(subtle.exportKey("pkcs8", pub), "InvalidAccessError");
    await rejectsDom(subtle.exportKey("raw", priv), "InvalidAccessError");
    await rejectsDom(subtle.sign(ecdsa256, pub, utf8("x")), "InvalidAccessError");
    await rejectsDom(subtle.sign({ name: "ECDSA", hash: "SHA-256" }, await subtle.importKey("raw", utf8("k"), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]), utf8("x")), "InvalidAccessError");
    await rejectsDom(subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["encrypt"]), "SyntaxError");
    await rejectsDom(subtle.generateKey({ name: "ECDSA", namedCurve: "Q-1" }, true, ["sign"]), "NotSupportedError");
  }],
  ["subtle: ES256 with OpenSSL keys (pkcs8/spki) and generated P-384 keys", async () => {
    const alg = { name: "ECDSA", namedCurve: "P-256" };
    const priv = await subtle.importKey("pkcs8", unb64(ec_p8), alg, false, ["sign"]);
    const pub = await subtle.importKey("spki", unb64(ec_spki), alg, true, ["verify"]);
    assertEq(hex(await subtle.exportKey("spki", pub)), hex(unb64(ec_spki)), "spki round trip");
    const sig = await subtle.sign({ name: "ECDSA", hash: "SHA-256" }, priv, utf8("hello jose"));
    assertEq(await subtle.verify({ name: "ECDSA", hash: "SHA-256" }, pub, sig, utf8("hello jose")), true);
    const pair = await subtle.generateKey({ name: "ECDSA", namedCurve: "P-384" }, false, ["sign", "verify"]);
    assertJson(pair.publicKey.usages, ["verify"]);
    assertJson(pair.privateKey.usages, ["sign"]);
    assertEq(pair.publicKey.extractable, true);
    assertEq(pair.privateKey.extractable, false);
    const s384 = await subtle.sign({ name: "ECDSA", hash: "SHA-384" }, pair.privateKey, utf8("m"));
    assertEq(s384.byteLength, 96);
    assertEq(await subtle.verify({ name: "ECDSA", hash: "SHA-384" }, pair.publicKey, s384, utf8("m")), true);
    assertEq(await subtle.verify({ name: "ECDSA", hash: "SHA-256" }, pair.publicKey, s384, utf8("m")), false);
    const sha1 = await subtle.sign({ name: "ECDSA", hash: "SHA-1" }, pair.privateKey, utf8("m"));
    assertEq(await subtle.verify({ name: "ECDSA", hash: "SHA-1" }, pair.publicKey, sha1, utf8("m")), true, "SHA-1 (shorter than the field) on P-384");
    const jwk = await subtle.exportKey("jwk", pair.publicKey);
    assertEq(jwk.crv, "P-384");
    assertEq(unb64(jwk.x.replace(/-/g, "+").replace(/_/g, "/")).length, 48);
  }],
  ["subtle: ECDH P-256/P-384 and X25519 (RFC 7748 6.1) agreement", async () => {
    for (const namedCurve of ["P-256", "P-384"]) {
      const a = await subtle.generateKey({ name: "ECDH", namedCurve }, true, ["deriveBits"]);
      const b = await subtle.generateKey({ name: "ECDH", namedCurve }, true, ["deriveBits", "deriveKey"]);
      assertJson(a.publicKey.usages, []);
      const ab = await subtle.deriveBits({ name: "ECDH", public: b.publicKey }, a.privateKey, null);
      const ba = await subtle.deriveBits({ name: "ECDH", public: a.publicKey }, b.privateKey);
      assertEq(ab.byteLength, namedCurve === "P-256" ? 32 : 48);
      assertEq(hex(ab), hex(ba));
      const short = await subtle.deriveBits({ name: "ECDH", public: b.publicKey }, a.privateKey, 12);
      assertEq(hex(short), hex(new Uint8Array([new Uint8Array(ab)[0], new Uint8Array(ab)[1] & 0xf0])));
      await rejectsDom(subtle.deriveBits({ name: "ECDH", public: b.publicKey }, a.privateKey, 8 * 64), "OperationError");
      await rejectsDom(subtle.deriveBits({ name: "ECDH", public: b.privateKey }, a.privateKey, 8), "InvalidAccessError");
      const k = await subtle.deriveKey({ name: "ECDH", public: a.publicKey }, b.privateKey, { name: "AES-GCM", length: 128 }, true, ["encrypt"]);
      assertEq(hex(await subtle.exportKey("raw", k)), hex(ab).slice(0, 32));
    }
    const p256 = await subtle.generateKey({ name: "ECDH", namedCurve: "P-256" }, true, ["deriveBits"]);
    const p384 = await subtle.generateKey({ name: "ECDH", namedCurve: "P-384" }, true, ["deriveBits"]);
    await rejectsDom(subtle.deriveBits({ name: "ECDH", public: p384.publicKey }, p256.privateKey, 8), "InvalidAccessError");
    await assertRejects(subtle.deriveBits({ name: "ECDH", public: "nope" }, p256.privateKey, 8), TypeError);
    const alice = await subtle.importKey("jwk", {
      kty: "OKP", crv: "X25519",
      d: b64url(unhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")),
      x: b64url(unhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")),
    }, "X25519", true, ["deriveBits"]);
    const bob = await subtle.importKey("raw", unhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"), { name: "X25519" }, true, []);
    const shared = await subtle.deriveBits({ name: "X25519", public: bob }, alice, 256);
    assertEq(hex(shared), "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
    const zero = await subtle.importKey("raw", new Uint8Array(32), "X25519", true, []);
    await rejectsDom(subtle.deriveBits({ name: "X25519", public: zero }, alice, 256), "OperationError");
    await rejectsDom(subtle.importKey("raw", new Uint8Array(32), "X25519", true, ["deriveBits"]), "SyntaxError");
    const pkcs8 = await subtle.exportKey("pkcs8", alice);
    assertEq(pkcs8.byteLength, 48);
    const again = await subtle.importKey("pkcs8", pkcs8, "X25519", true, ["deriveBits"]);
    assertEq(hex(await subtle.deriveBits({ name: "X25519", public: bob }, again, 256)), hex(shared));
    const gen = await subtle.generateKey("X25519", true, ["deriveBits"]);
    const other = await subtle.generateKey("X25519", true, ["deriveBits"]);
    assertEq(hex(await subtle.deriveBits({ name: "X25519", public: other.publicKey }, gen.privateKey, 256)),
      hex(await subtle.deriveBits({ name: "X25519", public: gen.publicKey }, other.privateKey, 256)));
  }],
  ["subtle: Ed25519 (RFC 8032 test 1)", async () => {
    const d = b64url(unhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"));
    const x = b64url(unhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"));
    const priv = await subtle.importKey("jwk", { kty: "OKP", crv: "Ed25519", d, x }, "Ed25519", true, ["sign"]);
    const pub = await subtle.importKey("raw", unhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"), "Ed25519", true, ["verify"]);
    assertJson(pub.algorithm, { name: "Ed25519" });
    const sig = await subtle.sign("Ed25519", priv, new Uint8Array(0));
    assertEq(hex(sig), "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b");
    assertEq(await subtle.verify("Ed25519", pub, sig, new Uint8Array(0)), true);
    assertEq(await subtle.verify("Ed25519", pub, sig, new Uint8Array(1)), false);
    assertEq(await subtle.verify("Ed25519", pub, new Uint8Array(sig).subarray(0, 63), new Uint8Array(0)), false);
    const jwk = await subtle.exportKey("jwk", priv);
    assertEq(jwk.kty, "OKP");
    assertEq(jwk.crv, "Ed25519");
    assertEq(jwk.d, d);
    assertEq(jwk.x, x);
    const pkcs8 = new Uint8Array(await subtle.exportKey("pkcs8", priv));
    assertEq(hex(pkcs8), "302e020100300506032b657004220420" + hex(unhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")));
    const spki = new Uint8Array(await subtle.exportKey("spki", pub));
    assertEq(hex(spki), "302a300506032b6570032100d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
    await rejectsDom(subtle.importKey("pkcs8", pkcs8, "X25519", true, ["deriveBits"]), "DataError");
    await rejectsDom(subtle.importKey("jwk", { kty: "OKP", crv: "Ed25519", d, x: b64url(new Uint8Array(32).fill(1)) }, "Ed25519", true, ["sign"]), "DataError");
    const pair = await subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"]);
    const s = await subtle.sign({ name: "Ed25519" }, pair.privateKey, utf8("m"));
    assertEq(await subtle.verify({ name: "Ed25519" }, pair.publicKey, s, utf8("m")), true);
  }],
  ["subtle: RSASSA-PKCS1-v1_5 RS256 with OpenSSL keys, JWK and spki/pkcs8 round trips", async () => {
    const alg = { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" };
    const priv = await subtle.importKey("pkcs8", unb64(rsa_p8), alg, true, ["sign"]);
    const pub = await subtle.importKey("spki", unb64(rsa_spki), alg, true, ["verify"]);
    assertEq(priv.algorithm.modulusLength, 2048);
    assertEq(hex(priv.algorithm.publicExponent), "010001");
    assertEq(priv.algorithm.hash.name, "SHA-256");
    const sig = await subtle.sign("RSASSA-PKCS1-v1_5", priv, utf8("hello jose"));
    assertEq(hex(sig), hex(unb64(rsa_sig)), "PKCS#1 v1.5 signatures are deterministic: same as OpenSSL");
    assertEq(await subtle.verify("RSASSA-PKCS1-v1_5", pub, unb64(rsa_sig), utf8("hello jose")), true);
    assertEq(await subtle.verify("RSASSA-PKCS1-v1_5", pub, unb64(rsa_sig), utf8("hello josh")), false);
    assertEq(hex(await subtle.exportKey("spki", pub)), hex(unb64(rsa_spki)));
    assertEq(hex(await subtle.exportKey("pkcs8", priv)), hex(unb64(rsa_p8)));
    const jwk = await subtle.exportKey("jwk", priv);
    assertEq(jwk.alg, "RS256");
    assertJson(Object.keys(jwk).sort(), ["alg", "d", "dp", "dq", "e", "ext", "key_ops", "kty", "n", "p", "q", "qi"]);
    assertEq(jwk.e, "AQAB");
    const fromJwk = await subtle.importKey("jwk", jwk, alg, true, ["sign"]);
    assertEq(hex(await subtle.exportKey("pkcs8", fromJwk)), hex(unb64(rsa_p8)));
    const pubJwk = await subtle.exportKey("jwk", pub);
    assertJson(Object.keys(pubJwk).sort(), ["alg", "e", "ext", "key_ops", "kty", "n"]);
    const pub2 = await subtle.importKey("jwk", pubJwk, alg, true, ["verify"]);
    assertEq(await subtle.verify(alg, pub2, sig, utf8("hello jose")), true);
    await rejectsDom(subtle.importKey("jwk", pubJwk, { name: "RSASSA-PKCS1-v1_5", hash: "SHA-512" }, true, ["verify"]), "DataError");
    await rejectsDom(subtle.importKey("raw", unb64(rsa_spki), alg, true, ["verify"]), "NotSupportedError");
    await rejectsDom(subtle.importKey("spki", unb64(ec_spki), alg, true, ["verify"]), "DataError");
    await rejectsDom(subtle.verify({ name: "RSA-PSS", saltLength: 32 }, pub, sig, utf8("x")), "InvalidAccessError");
  }],
  ["subtle: RSA-PSS and RSA-OAEP with the OpenSSL key, RSA generateKey", async () => {
    const pss = { name: "RSA-PSS", hash: "SHA-256" };
    const priv = await subtle.importKey("pkcs8", unb64(rsa_p8), pss, false, ["sign"]);
    const pub = await subtle.importKey("spki", unb64(rsa_spki), pss, false, ["verify"]);
    const s1 = await subtle.sign({ name: "RSA-PSS", saltLength: 32 }, priv, utf8("m"));
    const s2 = await subtle.sign({ name: "RSA-PSS", saltLength: 32 }, priv, utf8("m"));
    assert(hex(s1) !== hex(s2), "PSS signatures are salted");
    assertEq(await subtle.verify({ name: "RSA-PSS", saltLength: 32 }, pub, s1, utf8("m")), true);
    assertEq(await subtle.verify({ name: "RSA-PSS", saltLength: 32 }, pub, s2, utf8("n")), false);
    await assertRejects(subtle.sign({ name: "RSA-PSS" }, priv, utf8("m")), TypeError);
    const oaep = { name: "RSA-OAEP", hash: "SHA-256" };
    const enc = await subtle.importKey("spki", unb64(rsa_spki), oaep, false, ["encrypt", "wrapKey"]);
    const dec = await subtle.importKey("pkcs8", unb64(rsa_p8), oaep, false, ["decrypt", "unwrapKey"]);
    const ct = await subtle.encrypt({ name: "RSA-OAEP", label: utf8("L") }, enc, utf8("secret"));
    assertEq(ct.byteLength, 256);
    assertEq(new TextDecoder().decode(await subtle.decrypt({ name: "RSA-OAEP", label: utf8("L") }, dec, ct)), "secret");
    await rejectsDom(subtle.decrypt({ name: "RSA-OAEP" }, dec, ct), "OperationError");
    await rejectsDom(subtle.encrypt({ name: "RSA-OAEP" }, enc, new Uint8Array(300)), "OperationError");
    await rejectsDom(subtle.encrypt({ name: "RSA-OAEP" }, dec, utf8("x")), "InvalidAccessError");
    await rejectsDom(subtle.importKey("spki", unb64(rsa_spki), oaep, false, ["decrypt"]), "SyntaxError");
    const aes = await subtle.importKey("raw", new Uint8Array(16).fill(7), "AES-CBC", true, ["encrypt"]);
    const wrapped = await subtle.wrapKey("raw", aes, enc, { name: "RSA-OAEP" });
    const unwrapped = await subtle.unwrapKey("raw", wrapped, dec, { name: "RSA-OAEP" }, "AES-CBC", true, ["decrypt"]);
    assertEq(hex(await subtle.exportKey("raw", unwrapped)), "07".repeat(16));
    const gen = await subtle.generateKey({ name: "RSASSA-PKCS1-v1_5", modulusLength: 1024, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" }, true, ["sign", "verify"]);
    assertJson(gen.privateKey.algorithm.hash, { name: "SHA-256" });
    assertEq(gen.publicKey.algorithm.modulusLength, 1024);
    assert(gen.publicKey.algorithm.publicExponent instanceof Uint8Array, "publicExponent is a Uint8Array");
    const gs = await subtle.sign("RSASSA-PKCS1-v1_5", gen.privateKey, utf8("m"));
    assertEq(gs.byteLength, 128);
    assertEq(await subtle.verify("RSASSA-PKCS1-v1_5", gen.publicKey, gs, utf8("m")), true);
    await assertRejects(subtle.generateKey({ name: "RSA-OAEP", modulusLength: 1024, publicExponent: [1, 0, 1], hash: "SHA-256" }, true, ["encrypt"]), TypeError);
  }],
  ["subtle: RSA-PSS saltLength is bounded by the key (no huge salt allocation)", async () => {
    const pss = { name: "RSA-PSS", hash: "SHA-256" };
    const priv = await subtle.importKey("pkcs8", unb64(rsa_p8), pss, false, ["sign"]);
    const pub = await subtle.importKey("spki", unb64(rsa_spki), pss, false, ["verify"]);
    // 2048-bit key, SHA-256: emLen 256 - hLen 32 - 2 = 222 (RFC 8017 9.1.1).
    const sig = await subtle.sign({ name: "RSA-PSS", saltLength: 222 }, priv, utf8("m"));
    assertEq(await subtle.verify({ name: "RSA-PSS", saltLength: 222 }, pub, sig, utf8("m")), true);
    for (const saltLength of [223, 0x10000, 0xffffffff]) {
      await rejectsDom(subtle.sign({ name: "RSA-PSS", saltLength }, priv, utf8("m")), "OperationError");
      assertEq(await subtle.verify({ name: "RSA-PSS", saltLength }, pub, sig, utf8("m")), false);
    }
  }],
  ["subtle: RSA moduli over 8192 bits are refused (generateKey, spki, jwk)", async () => {
    const alg = { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" };
    await rejectsDom(subtle.generateKey({ ...alg, modulusLength: 8200, publicExponent: new Uint8Array([1, 0, 1]) }, true, ["sign"]), "OperationError");
    await rejectsDom(subtle.generateKey({ ...alg, modulusLength: 0xffffffff, publicExponent: new Uint8Array([1, 0, 1]) }, true, ["sign"]), "OperationError");
    const len = (n) => (n < 128 ? [n] : n < 256 ? [0x81, n] : [0x82, n >> 8, n & 255]);
    const tlv = (tag, body) => [tag, ...len(body.length), ...body];
    const spkiOf = (n) => new Uint8Array(tlv(0x30, [
      ...tlv(0x30, [6, 9, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 1, 1, 5, 0]),
      ...tlv(3, [0, ...tlv(0x30, [...tlv(2, [0, ...n]), ...tlv(2, [1, 0, 1])])]),
    ]));
    const n8200 = [0x80, ...new Array(1024).fill(0xff)];
    const n8192 = n8200.slice(1);
    await rejectsDom(subtle.importKey("spki", spkiOf(n8200), alg, false, ["verify"]), "NotSupportedError");
    await rejectsDom(subtle.importKey("jwk", { kty: "RSA", n: b64url(n8200), e: "AQAB" }, alg, false, ["verify"]), "NotSupportedError");
    const ok = await subtle.importKey("spki", spkiOf(n8192), alg, false, ["verify"]);
    assertEq(ok.algorithm.modulusLength, 8192);
  }],
  ["subtle: CryptoKey algorithm and usages are frozen copies of the internal slots", async () => {
    const k = await subtle.generateKey({ name: "HMAC", hash: "SHA-256" }, false, ["verify"]);
    assert(Object.isFrozen(k.usages) && Object.isFrozen(k.algorithm) && Object.isFrozen(k.algorithm.hash), "frozen");
    assertEq(k.usages, k.usages, "usages is the same object each time");
    assertThrows(() => k.usages.push("sign"), TypeError);
    assertEq(Reflect.set(k.algorithm, "name", "ECDH"), false);
    assertEq(Reflect.set(k.algorithm.hash, "name", "SHA-1"), false);
    await rejectsDom(subtle.sign("HMAC", k, utf8("m")), "InvalidAccessError");
    const r = await subtle.generateKey({ name: "RSA-PSS", modulusLength: 1024, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" }, true, ["sign", "verify"]);
    const a = r.publicKey.algorithm;
    assert(Object.isFrozen(a) && Object.isFrozen(a.hash), "RSA algorithm frozen");
    a.publicExponent[0] = 9;
    assertJson([...structuredClone(r.publicKey).algorithm.publicExponent], [1, 0, 1], "the slot keeps its own exponent");
    assertEq(r.publicKey.algorithm, a, "algorithm is cached");
    const c = structuredClone(k);
    assert(c.usages !== k.usages && c.algorithm !== k.algorithm, "a clone gets its own attribute objects");
    assertJson(c.usages, ["verify"]);
  }],
  ["subtle: structuredClone of a CryptoKey and randomness per key", async () => {
    const key = await subtle.importKey("raw", utf8("Jefe"), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    const copy = structuredClone(key);
    assert(copy !== key && copy instanceof CryptoKey, "a new CryptoKey");
    assertJson(copy.algorithm, key.algorithm);
    assert(copy.algorithm !== key.algorithm, "its own algorithm object");
    assertEq(copy.extractable, false);
    assertEq(hex(await subtle.sign("HMAC", copy, utf8("what do ya want for nothing?"))), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    const [a, b] = await Promise.all([1, 2].map(() => subtle.generateKey({ name: "AES-GCM", length: 128 }, true, ["encrypt"])));
    assert(hex(await subtle.exportKey("raw", a)) !== hex(await subtle.exportKey("raw", b)), "generated keys differ");
  }],
];
