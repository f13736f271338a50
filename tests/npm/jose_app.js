// jose (pinned in package.json) signing and verifying JWTs with crypto.subtle: ES256 with a
// JWK key, RS256 with PKCS#8/SPKI PEM keys. Served by kvmjs (QuickJS) and by native deno;
// crates/kvmjs/tests/npm_apps.rs compares the answers and verifies each engine's tokens on
// the other one.
import { SignJWT, jwtVerify, importJWK, importPKCS8, importSPKI, generateKeyPair, exportJWK, decodeProtectedHeader } from "jose";
import { EC_PRIVATE_JWK, RSA_PRIVATE_PKCS8, RSA_PUBLIC_SPKI } from "./keys.js";

const { d: _d, ...EC_PUBLIC_JWK } = EC_PRIVATE_JWK;
// A fixed iat/exp: RS256 (PKCS#1 v1.5) signatures are deterministic, so both engines must
// produce the same token byte for byte. exp is far in the future so verification passes.
const CLAIMS = { sub: "user-42", scope: "read write", name: "Zoë" };
const IAT = 1767225600; // 2026-01-01T00:00:00Z
const EXP = 4102444800; // 2100-01-01T00:00:00Z

const keys = {
  ES256: async () => ({ priv: await importJWK(EC_PRIVATE_JWK, "ES256"), pub: await importJWK(EC_PUBLIC_JWK, "ES256") }),
  RS256: async () => ({ priv: await importPKCS8(RSA_PRIVATE_PKCS8, "RS256"), pub: await importSPKI(RSA_PUBLIC_SPKI, "RS256") }),
};

const sign = (alg, priv) =>
  new SignJWT(CLAIMS).setProtectedHeader({ alg, typ: "JWT", kid: `test-${alg}` }).setIssuedAt(IAT).setExpirationTime(EXP).setIssuer("urn:kvmjs:test").sign(priv);

const verify = async (alg, token) => {
  const { pub } = await keys[alg]();
  try {
    const { payload, protectedHeader } = await jwtVerify(token, pub, { issuer: "urn:kvmjs:test", algorithms: [alg] });
    return { ok: true, payload, protectedHeader };
  } catch (e) {
    return { ok: false, code: e.code ?? e.name };
  }
};

const json = (v, status = 200) => new Response(JSON.stringify(v), { status, headers: { "content-type": "application/json" } });

export default {
  async fetch(request) {
    const url = new URL(request.url);
    const [, , action, alg] = url.pathname.split("/"); // /jose/<action>/<alg>
    if (!keys[alg]) return json({ error: `unknown alg ${alg}` }, 404);
    if (action === "sign") {
      const { priv } = await keys[alg]();
      return new Response(await sign(alg, priv), { headers: { "content-type": "application/jwt" } });
    }
    if (action === "verify") return json(await verify(alg, (await request.text()).trim()));
    if (action === "roundtrip") {
      // Sign and verify in one request, then tamper with the payload: the verdicts, not the
      // (randomised, for ES256) signature, are compared across engines.
      const { priv } = await keys[alg]();
      const token = await sign(alg, priv);
      const [h, p, s] = token.split(".");
      const forged = [h, btoa(JSON.stringify({ ...CLAIMS, sub: "admin" })).replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_"), s].join(".");
      return json({ header: decodeProtectedHeader(token), good: await verify(alg, token), forged: await verify(alg, forged), parts: token.split(".").length });
    }
    if (action === "generate") {
      // A fresh key pair (random per request): export the public JWK's shape and prove it verifies.
      const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true, modulusLength: 2048 });
      const jwk = await exportJWK(publicKey);
      const token = await new SignJWT({ n: 1 }).setProtectedHeader({ alg }).sign(privateKey);
      const { payload } = await jwtVerify(token, publicKey);
      return json({ kty: jwk.kty, crv: jwk.crv ?? null, e: jwk.e ?? null, nBytes: jwk.n ? atob(jwk.n.replace(/-/g, "+").replace(/_/g, "/")).length : null, payload });
    }
    return json({ error: `unknown action ${action}` }, 404);
  },
};
