//! ECDSA and ECDH on P-256 and P-384. Private keys travel as PKCS#8 DER, public keys as
//! SPKI DER; ECDSA signatures are the raw r || s Web Crypto uses (not DER).

use super::hash::{digest, Hash};
use super::{CryptoError, GuestRng, Result};
use p256::elliptic_curve;
use pkcs8::{DecodePrivateKey, EncodePrivateKey};
use spki::{DecodePublicKey, EncodePublicKey};

/// A named curve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    /// NIST P-256.
    P256,
    /// NIST P-384.
    P384,
}

impl Curve {
    /// The curve named `name` (Web Crypto's namedCurve).
    pub fn parse(name: &str) -> Result<Curve> {
        match name {
            "P-256" => Ok(Curve::P256),
            "P-384" => Ok(Curve::P384),
            _ => Err(CryptoError::NotSupported(format!(
                "Unsupported namedCurve: {name}"
            ))),
        }
    }
}

/// Evaluates `$body` with `$c` the curve crate of `$curve`.
macro_rules! by_curve {
    ($curve:expr, $c:ident => $body:expr) => {
        match $curve {
            Curve::P256 => {
                use p256 as $c;
                $body
            }
            Curve::P384 => {
                use p384 as $c;
                $body
            }
        }
    };
}

fn der_err<E>(what: &'static str) -> impl FnOnce(E) -> CryptoError {
    move |_| CryptoError::data(what)
}

/// A fresh key pair: (PKCS#8, SPKI).
pub fn generate(curve: Curve) -> Result<(Vec<u8>, Vec<u8>)> {
    by_curve!(curve, c => {
        let sk = c::SecretKey::random(&mut GuestRng);
        pair(&sk)
    })
}

fn pair<C>(sk: &elliptic_curve::SecretKey<C>) -> Result<(Vec<u8>, Vec<u8>)>
where
    C: elliptic_curve::CurveArithmetic + pkcs8::AssociatedOid,
    elliptic_curve::AffinePoint<C>:
        elliptic_curve::sec1::FromEncodedPoint<C> + elliptic_curve::sec1::ToEncodedPoint<C>,
    elliptic_curve::FieldBytesSize<C>: elliptic_curve::sec1::ModulusSize,
{
    let der = sk
        .to_pkcs8_der()
        .map_err(|_| CryptoError::op("cannot encode the private key"))?;
    Ok((der.as_bytes().to_vec(), spki_of(&sk.public_key())?))
}

/// Imports a key in `format` ("pkcs8", "spki" or "raw"): its re-encoded DER (PKCS#8 for
/// private keys, SPKI for public) and whether it is private. The curve must match.
pub fn import(curve: Curve, format: &str, data: &[u8]) -> Result<(Vec<u8>, bool)> {
    by_curve!(curve, c => match format {
        "pkcs8" => {
            let sk = c::SecretKey::from_pkcs8_der(data).map_err(der_err("Invalid or mismatched PKCS#8 EC key"))?;
            Ok((pair(&sk)?.0, true))
        }
        "spki" => {
            let pk = c::PublicKey::from_public_key_der(data).map_err(der_err("Invalid or mismatched SPKI EC key"))?;
            Ok((spki_of(&pk)?, false))
        }
        "raw" => {
            let pk = c::PublicKey::from_sec1_bytes(data).map_err(der_err("Invalid EC point"))?;
            Ok((spki_of(&pk)?, false))
        }
        _ => Err(CryptoError::NotSupported(format!("EC keys cannot be imported as {format}"))),
    })
}

fn spki_of<C>(pk: &elliptic_curve::PublicKey<C>) -> Result<Vec<u8>>
where
    C: elliptic_curve::CurveArithmetic + pkcs8::AssociatedOid,
    elliptic_curve::AffinePoint<C>:
        elliptic_curve::sec1::FromEncodedPoint<C> + elliptic_curve::sec1::ToEncodedPoint<C>,
    elliptic_curve::FieldBytesSize<C>: elliptic_curve::sec1::ModulusSize,
{
    Ok(pk
        .to_public_key_der()
        .map_err(|_| CryptoError::op("cannot encode the public key"))?
        .as_bytes()
        .to_vec())
}

/// A key from JWK coordinates (already base64url-decoded): PKCS#8 when `d` is given
/// (which must match x and y), SPKI otherwise.
pub fn from_jwk(curve: Curve, d: Option<&[u8]>, x: &[u8], y: &[u8]) -> Result<Vec<u8>> {
    by_curve!(curve, c => {
        use elliptic_curve::sec1::ToEncodedPoint;
        let size = x.len();
        if size != y.len() || size != c::FieldBytes::default().len() {
            return Err(CryptoError::data("JWK x and y do not fit the curve"));
        }
        let mut point = vec![4u8];
        point.extend_from_slice(x);
        point.extend_from_slice(y);
        let pk = c::PublicKey::from_sec1_bytes(&point).map_err(der_err("JWK x and y are not a point on the curve"))?;
        match d {
            Some(d) => {
                let sk = c::SecretKey::from_slice(d).map_err(der_err("Invalid JWK d"))?;
                if sk.public_key().to_encoded_point(false) != pk.to_encoded_point(false) {
                    return Err(CryptoError::data("JWK d does not match x and y"));
                }
                Ok(pair(&sk)?.0)
            }
            None => spki_of(&pk),
        }
    })
}

/// The JWK members of an EC key, big-endian.
pub struct JwkMembers {
    /// The x coordinate.
    pub x: Vec<u8>,
    /// The y coordinate.
    pub y: Vec<u8>,
    /// The private scalar (private keys only).
    pub d: Option<Vec<u8>>,
}

/// JWK members of a key held as DER.
pub fn to_jwk(curve: Curve, der: &[u8], private: bool) -> Result<JwkMembers> {
    by_curve!(curve, c => {
        use elliptic_curve::sec1::ToEncodedPoint;
        let (pk, d) = if private {
            let sk = c::SecretKey::from_pkcs8_der(der).map_err(der_err("bad key"))?;
            (sk.public_key(), Some(sk.to_bytes().to_vec()))
        } else {
            (c::PublicKey::from_public_key_der(der).map_err(der_err("bad key"))?, None)
        };
        let p = pk.to_encoded_point(false);
        let (Some(x), Some(y)) = (p.x(), p.y()) else {
            return Err(CryptoError::op("the public key has no affine coordinates"));
        };
        Ok(JwkMembers { x: x.to_vec(), y: y.to_vec(), d })
    })
}

/// The uncompressed SEC1 point of a public key held as SPKI.
pub fn raw_public(curve: Curve, spki: &[u8]) -> Result<Vec<u8>> {
    by_curve!(curve, c => {
        use elliptic_curve::sec1::ToEncodedPoint;
        let pk = c::PublicKey::from_public_key_der(spki).map_err(der_err("bad key"))?;
        Ok(pk.to_encoded_point(false).as_bytes().to_vec())
    })
}

/// The digest ECDSA signs: a hash shorter than half the field (SHA-1 on P-384) is
/// zero-extended on the left, which keeps its value as FIPS 186 uses it and satisfies the
/// ecdsa crate's minimum prehash length.
fn prehash(curve: Curve, hash: Hash, data: &[u8]) -> Vec<u8> {
    let h = digest(hash, data);
    let field = match curve {
        Curve::P256 => 32,
        Curve::P384 => 48,
    };
    if h.len() >= field {
        return h;
    }
    let mut padded = vec![0u8; field - h.len()];
    padded.extend_from_slice(&h);
    padded
}

/// ECDSA signature (r || s) of `data` hashed with `hash`.
pub fn sign(curve: Curve, hash: Hash, pkcs8: &[u8], data: &[u8]) -> Result<Vec<u8>> {
    let prehash = prehash(curve, hash, data);
    by_curve!(curve, c => {
        use c::ecdsa::signature::hazmat::PrehashSigner;
        let sk = c::ecdsa::SigningKey::from_pkcs8_der(pkcs8).map_err(der_err("bad key"))?;
        let sig: c::ecdsa::Signature = sk
            .sign_prehash(&prehash)
            .map_err(|_| CryptoError::op("ECDSA signing failed"))?;
        Ok(sig.to_bytes().to_vec())
    })
}

/// Whether `sig` (r || s) is a valid ECDSA signature of `data` hashed with `hash`.
pub fn verify(curve: Curve, hash: Hash, spki: &[u8], sig: &[u8], data: &[u8]) -> Result<bool> {
    let prehash = prehash(curve, hash, data);
    by_curve!(curve, c => {
        use c::ecdsa::signature::hazmat::PrehashVerifier;
        let vk = c::ecdsa::VerifyingKey::from_public_key_der(spki).map_err(der_err("bad key"))?;
        let Ok(sig) = c::ecdsa::Signature::from_slice(sig) else { return Ok(false) };
        Ok(vk.verify_prehash(&prehash, &sig).is_ok())
    })
}

/// ECDH shared secret (the x coordinate) of a private and a public key.
pub fn derive(curve: Curve, pkcs8: &[u8], spki: &[u8]) -> Result<Vec<u8>> {
    by_curve!(curve, c => {
        let sk = c::SecretKey::from_pkcs8_der(pkcs8).map_err(der_err("bad key"))?;
        let pk = c::PublicKey::from_public_key_der(spki).map_err(der_err("bad key"))?;
        let shared = elliptic_curve::ecdh::diffie_hellman(sk.to_nonzero_scalar(), pk.as_affine());
        Ok(shared.raw_secret_bytes().to_vec())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_import_export_roundtrip() {
        for curve in [Curve::P256, Curve::P384] {
            let (sk, pk) = generate(curve).unwrap();
            let sig = sign(curve, Hash::Sha256, &sk, b"msg").unwrap();
            assert_eq!(sig.len(), if curve == Curve::P256 { 64 } else { 96 });
            assert!(verify(curve, Hash::Sha256, &pk, &sig, b"msg").unwrap());
            assert!(!verify(curve, Hash::Sha256, &pk, &sig, b"msh").unwrap());
            assert!(!verify(curve, Hash::Sha256, &pk, &sig[1..], b"msg").unwrap());
            assert_eq!(import(curve, "pkcs8", &sk).unwrap(), (sk.clone(), true));
            let m = to_jwk(curve, &sk, true).unwrap();
            let mp = to_jwk(curve, &pk, false).unwrap();
            assert_eq!((&m.x, &m.y), (&mp.x, &mp.y));
            assert_eq!(from_jwk(curve, m.d.as_deref(), &m.x, &m.y).unwrap(), sk);
            assert_eq!(from_jwk(curve, None, &m.x, &m.y).unwrap(), pk);
            let raw = raw_public(curve, &pk).unwrap();
            assert_eq!(import(curve, "raw", &raw).unwrap(), (pk.clone(), false));
        }
        let (sk256, _) = generate(Curve::P256).unwrap();
        assert_eq!(
            import(Curve::P384, "pkcs8", &sk256).unwrap_err().dom_name(),
            "DataError"
        );
    }

    #[test]
    fn short_hashes_sign_on_p384() {
        let (sk, pk) = generate(Curve::P384).unwrap();
        let sig = sign(Curve::P384, Hash::Sha1, &sk, b"m").unwrap();
        assert!(verify(Curve::P384, Hash::Sha1, &pk, &sig, b"m").unwrap());
        assert!(!verify(Curve::P384, Hash::Sha256, &pk, &sig, b"m").unwrap());
    }

    #[test]
    fn ecdh_agrees() {
        let (a, apub) = generate(Curve::P256).unwrap();
        let (b, bpub) = generate(Curve::P256).unwrap();
        assert_eq!(
            derive(Curve::P256, &a, &bpub).unwrap(),
            derive(Curve::P256, &b, &apub).unwrap()
        );
    }
}
