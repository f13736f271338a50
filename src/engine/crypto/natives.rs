//! `__native.subtle`: the JS bindings of the crypto primitives. Byte arguments are
//! Uint8Arrays the JS side has already copied (Web Crypto snapshots its inputs); failures
//! throw an Error whose `name` is the DOMException name the JS side rethrows as.

use super::hash::Hash;
use super::{aes, ec, hash, okp, rsa, CryptoError};
use rquickjs::{Array, Ctx, Exception, Function, Object, Result, TypedArray};

type Bytes<'js> = TypedArray<'js, u8>;

/// Copies the bytes out of a Uint8Array.
fn bytes(t: &Bytes<'_>) -> Vec<u8> {
    // SAFETY: the slice is copied at once, before any JS can run.
    unsafe { t.as_bytes() }
        .map(<[u8]>::to_vec)
        .unwrap_or_default()
}

fn out<'js>(ctx: &Ctx<'js>, v: Vec<u8>) -> Result<Bytes<'js>> {
    TypedArray::new(ctx.clone(), v)
}

/// Throws `e` as an Error named after its DOMException.
fn throw(ctx: &Ctx<'_>, e: CryptoError) -> rquickjs::Error {
    match Exception::from_message(ctx.clone(), &e.to_string()) {
        Ok(ex) => {
            if let Err(err) = ex.as_object().set("name", e.dom_name()) {
                return err;
            }
            ctx.throw(ex.into_value())
        }
        Err(err) => err,
    }
}

/// Converts a primitive's result for JS.
fn js<T>(ctx: &Ctx<'_>, r: super::Result<T>) -> Result<T> {
    r.map_err(|e| throw(ctx, e))
}

fn pair<'js>(ctx: &Ctx<'js>, (a, b): (Vec<u8>, Vec<u8>)) -> Result<Vec<Bytes<'js>>> {
    Ok(vec![out(ctx, a)?, out(ctx, b)?])
}

fn der_private<'js>(ctx: &Ctx<'js>, (der, private): (Vec<u8>, bool)) -> Result<Array<'js>> {
    let a = Array::new(ctx.clone())?;
    a.set(0, out(ctx, der)?)?;
    a.set(1, private)?;
    Ok(a)
}

/// The key families the natives dispatch on: "EC" (param: curve), "OKP" (param: Ed25519
/// or X25519), "RSA".
enum Family {
    Ec(ec::Curve),
    Okp(okp::Okp),
    Rsa,
}

fn family(kind: &str, param: &str) -> super::Result<Family> {
    match kind {
        "EC" => Ok(Family::Ec(ec::Curve::parse(param)?)),
        "OKP" => Ok(Family::Okp(okp::Okp::parse(param)?)),
        "RSA" => Ok(Family::Rsa),
        _ => Err(CryptoError::NotSupported(format!(
            "Unknown key family {kind}"
        ))),
    }
}

fn hash_of(name: &str) -> super::Result<Hash> {
    Hash::parse(name)
}

fn generate(
    kind: &str,
    param: &str,
    bits: usize,
    exponent: &[u8],
) -> super::Result<(Vec<u8>, Vec<u8>)> {
    match family(kind, param)? {
        Family::Ec(c) => ec::generate(c),
        Family::Okp(a) => okp::generate(a),
        Family::Rsa => rsa::generate(bits, exponent),
    }
}

fn import(kind: &str, param: &str, format: &str, data: &[u8]) -> super::Result<(Vec<u8>, bool)> {
    match family(kind, param)? {
        Family::Ec(c) => ec::import(c, format, data),
        Family::Okp(a) => okp::import(a, format, data),
        Family::Rsa => rsa::import(format, data),
    }
}

fn export_raw(kind: &str, param: &str, der: &[u8], private: bool) -> super::Result<Vec<u8>> {
    match family(kind, param)? {
        Family::Ec(c) if !private => ec::raw_public(c, der),
        Family::Okp(a) if !private => Ok(okp::raw_public(a, der, false)?.to_vec()),
        _ => Err(CryptoError::NotSupported(
            "Only public EC and OKP keys export as raw".into(),
        )),
    }
}

/// JWK members as bytes: EC [x, y, d?], OKP [x, d?], RSA [n, e, d?, p?, q?, dp?, dq?, qi?].
fn jwk_export(kind: &str, param: &str, der: &[u8], private: bool) -> super::Result<Vec<Vec<u8>>> {
    match family(kind, param)? {
        Family::Ec(c) => {
            let m = ec::to_jwk(c, der, private)?;
            Ok([Some(m.x), Some(m.y), m.d].into_iter().flatten().collect())
        }
        Family::Okp(a) => {
            let x = okp::raw_public(a, der, private)?.to_vec();
            let d = if private {
                Some(okp::secret_of(a, der)?.to_vec())
            } else {
                None
            };
            Ok([Some(x), d].into_iter().flatten().collect())
        }
        Family::Rsa => rsa::to_jwk(der, private),
    }
}

/// A key from JWK members (order as in [`jwk_export`], with d first for EC/OKP: EC
/// [d, x, y], OKP [d, x]); returns DER.
fn jwk_import(kind: &str, param: &str, m: &[Option<Vec<u8>>]) -> super::Result<Vec<u8>> {
    let get = |i: usize| m.get(i).and_then(|v| v.as_deref());
    let need =
        |i: usize| get(i).ok_or_else(|| CryptoError::data("A required JWK member is missing"));
    match family(kind, param)? {
        Family::Ec(c) => ec::from_jwk(c, get(0), need(1)?, need(2)?),
        Family::Okp(a) => okp::from_jwk(a, get(0), need(1)?),
        Family::Rsa => rsa::from_jwk(m),
    }
}

fn rsa_scheme(alg: &str, salt: usize) -> rsa::Scheme {
    if alg == "RSA-PSS" {
        rsa::Scheme::Pss(salt)
    } else {
        rsa::Scheme::Pkcs1v15
    }
}

/// Signs with a PKCS#8 key; `alg` is ECDSA (param: curve), Ed25519, RSASSA-PKCS1-v1_5 or
/// RSA-PSS.
fn sign(
    alg: &str,
    param: &str,
    hash: &str,
    salt: usize,
    der: &[u8],
    data: &[u8],
) -> super::Result<Vec<u8>> {
    match alg {
        "ECDSA" => ec::sign(ec::Curve::parse(param)?, hash_of(hash)?, der, data),
        "Ed25519" => okp::ed25519_sign(der, data),
        "RSASSA-PKCS1-v1_5" | "RSA-PSS" => {
            rsa::sign(rsa_scheme(alg, salt), hash_of(hash)?, der, data)
        }
        _ => Err(CryptoError::NotSupported(format!("{alg} cannot sign"))),
    }
}

#[allow(clippy::too_many_arguments)]
fn verify(
    alg: &str,
    param: &str,
    hash: &str,
    salt: usize,
    der: &[u8],
    sig: &[u8],
    data: &[u8],
) -> super::Result<bool> {
    match alg {
        "ECDSA" => ec::verify(ec::Curve::parse(param)?, hash_of(hash)?, der, sig, data),
        "Ed25519" => okp::ed25519_verify(der, sig, data),
        "RSASSA-PKCS1-v1_5" | "RSA-PSS" => {
            rsa::verify(rsa_scheme(alg, salt), hash_of(hash)?, der, sig, data)
        }
        _ => Err(CryptoError::NotSupported(format!("{alg} cannot verify"))),
    }
}

fn derive(alg: &str, param: &str, pkcs8: &[u8], spki: &[u8]) -> super::Result<Vec<u8>> {
    match alg {
        "ECDH" => ec::derive(ec::Curve::parse(param)?, pkcs8, spki),
        "X25519" => okp::x25519(pkcs8, spki),
        _ => Err(CryptoError::NotSupported(format!(
            "{alg} cannot derive bits"
        ))),
    }
}

/// Builds `__native.subtle`.
pub fn install<'js>(ctx: &Ctx<'js>, native: &Object<'js>) -> Result<()> {
    let s = Object::new(ctx.clone())?;
    s.set(
        "digest",
        Function::new(ctx.clone(), |ctx: Ctx<'js>, h: String, d: Bytes<'js>| {
            let h = js(&ctx, hash_of(&h))?;
            out(&ctx, hash::digest(h, &bytes(&d)))
        })?,
    )?;
    s.set(
        "hmacSign",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, h: String, k: Bytes<'js>, d: Bytes<'js>| {
                let h = js(&ctx, hash_of(&h))?;
                out(&ctx, hash::hmac_sign(h, &bytes(&k), &bytes(&d)))
            },
        )?,
    )?;
    s.set(
        "hmacVerify",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, h: String, k: Bytes<'js>, d: Bytes<'js>, sig: Bytes<'js>| {
                let h = js(&ctx, hash_of(&h))?;
                Ok::<_, rquickjs::Error>(hash::hmac_verify(h, &bytes(&k), &bytes(&d), &bytes(&sig)))
            },
        )?,
    )?;
    s.set(
        "pbkdf2",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>,
             h: String,
             pw: Bytes<'js>,
             salt: Bytes<'js>,
             iterations: u32,
             len: usize| {
                let r = hash_of(&h)
                    .and_then(|h| hash::pbkdf2(h, &bytes(&pw), &bytes(&salt), iterations, len));
                out(&ctx, js(&ctx, r)?)
            },
        )?,
    )?;
    s.set(
        "hkdf",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>,
             h: String,
             ikm: Bytes<'js>,
             salt: Bytes<'js>,
             info: Bytes<'js>,
             len: usize| {
                let r = hash_of(&h)
                    .and_then(|h| hash::hkdf(h, &bytes(&ikm), &bytes(&salt), &bytes(&info), len));
                out(&ctx, js(&ctx, r)?)
            },
        )?,
    )?;
    s.set(
        "aesGcm",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>,
             enc: bool,
             key: Bytes<'js>,
             iv: Bytes<'js>,
             aad: Bytes<'js>,
             tag: u32,
             d: Bytes<'js>| {
                let r = aes::gcm(
                    enc,
                    &bytes(&key),
                    &bytes(&iv),
                    &bytes(&aad),
                    tag,
                    &bytes(&d),
                );
                out(&ctx, js(&ctx, r)?)
            },
        )?,
    )?;
    s.set(
        "aesCbc",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, enc: bool, key: Bytes<'js>, iv: Bytes<'js>, d: Bytes<'js>| {
                let r = aes::cbc(enc, &bytes(&key), &bytes(&iv), &bytes(&d));
                out(&ctx, js(&ctx, r)?)
            },
        )?,
    )?;
    s.set(
        "aesCtr",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, key: Bytes<'js>, counter: Bytes<'js>, length: u32, d: Bytes<'js>| {
                let r = aes::ctr(&bytes(&key), &bytes(&counter), length, &bytes(&d));
                out(&ctx, js(&ctx, r)?)
            },
        )?,
    )?;
    s.set(
        "aesKw",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, wrap: bool, key: Bytes<'js>, d: Bytes<'js>| {
                let r = aes::kw(wrap, &bytes(&key), &bytes(&d));
                out(&ctx, js(&ctx, r)?)
            },
        )?,
    )?;
    s.set(
        "generateKeyPair",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, kind: String, param: String, bits: usize, e: Option<Bytes<'js>>| {
                let e = e.as_ref().map(bytes).unwrap_or_default();
                let r = generate(&kind, &param, bits, &e);
                pair(&ctx, js(&ctx, r)?)
            },
        )?,
    )?;
    s.set(
        "importKey",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, kind: String, param: String, format: String, d: Bytes<'js>| {
                let r = import(&kind, &param, &format, &bytes(&d));
                der_private(&ctx, js(&ctx, r)?)
            },
        )?,
    )?;
    s.set(
        "exportRaw",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, kind: String, param: String, d: Bytes<'js>, private: bool| {
                let r = export_raw(&kind, &param, &bytes(&d), private);
                out(&ctx, js(&ctx, r)?)
            },
        )?,
    )?;
    s.set(
        "jwkExport",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, kind: String, param: String, d: Bytes<'js>, private: bool| {
                let r = jwk_export(&kind, &param, &bytes(&d), private);
                js(&ctx, r)?
                    .into_iter()
                    .map(|m| out(&ctx, m))
                    .collect::<Result<Vec<_>>>()
            },
        )?,
    )?;
    s.set(
        "jwkImport",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, kind: String, param: String, m: Vec<Option<Bytes<'js>>>| {
                let m: Vec<Option<Vec<u8>>> = m.iter().map(|v| v.as_ref().map(bytes)).collect();
                let r = jwk_import(&kind, &param, &m);
                out(&ctx, js(&ctx, r)?)
            },
        )?,
    )?;
    s.set(
        "rsaInfo",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, d: Bytes<'js>, private: bool| {
                let (bits, e) = js(&ctx, rsa::info(&bytes(&d), private))?;
                let a = Array::new(ctx.clone())?;
                a.set(0, bits)?;
                a.set(1, out(&ctx, e)?)?;
                Ok::<_, rquickjs::Error>(a)
            },
        )?,
    )?;
    s.set(
        "sign",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>,
             alg: String,
             param: String,
             h: String,
             salt: usize,
             der: Bytes<'js>,
             d: Bytes<'js>| {
                let r = sign(&alg, &param, &h, salt, &bytes(&der), &bytes(&d));
                out(&ctx, js(&ctx, r)?)
            },
        )?,
    )?;
    s.set(
        "verify",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>,
             alg: String,
             param: String,
             h: String,
             salt: usize,
             b: Vec<Bytes<'js>>| {
                // b: [key DER, signature, data].
                let [der, sig, d] = &b[..] else {
                    return Err(rquickjs::Exception::throw_type(
                        &ctx,
                        "verify takes [key, signature, data]",
                    ));
                };
                js(
                    &ctx,
                    verify(&alg, &param, &h, salt, &bytes(der), &bytes(sig), &bytes(d)),
                )
            },
        )?,
    )?;
    s.set(
        "deriveBits",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, alg: String, param: String, sk: Bytes<'js>, pk: Bytes<'js>| {
                let r = derive(&alg, &param, &bytes(&sk), &bytes(&pk));
                out(&ctx, js(&ctx, r)?)
            },
        )?,
    )?;
    s.set(
        "rsaOaep",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>,
             enc: bool,
             h: String,
             label: Bytes<'js>,
             der: Bytes<'js>,
             d: Bytes<'js>| {
                let r = hash_of(&h)
                    .and_then(|h| rsa::oaep(enc, h, &bytes(&label), &bytes(&der), &bytes(&d)));
                out(&ctx, js(&ctx, r)?)
            },
        )?,
    )?;
    native.set("subtle", s)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natives_throw_named_errors() {
        let rt = rquickjs::Runtime::new().unwrap();
        let ctx = rquickjs::Context::full(&rt).unwrap();
        ctx.with(|ctx| {
            let n = Object::new(ctx.clone()).unwrap();
            install(&ctx, &n).unwrap();
            ctx.globals().set("n", n).unwrap();
            let hex: String = ctx
                .eval("Array.from(n.subtle.digest('SHA-256', new Uint8Array([97, 98, 99])), (b) => b.toString(16).padStart(2, '0')).join('')")
                .unwrap();
            assert_eq!(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
            let name: String = ctx
                .eval("try { n.subtle.importKey('EC', 'P-256', 'spki', new Uint8Array(3)); 'none' } catch (e) { e.name }")
                .unwrap();
            assert_eq!(name, "DataError");
            let name: String = ctx
                .eval("try { n.subtle.digest('MD5', new Uint8Array(3)); 'none' } catch (e) { e.name }")
                .unwrap();
            assert_eq!(name, "NotSupportedError");
        });
    }
}
