//! Ed25519 and X25519 (RFC 8032 / RFC 7748), keys as PKCS#8 v1 and SPKI DER per RFC 8410.

use super::{CryptoError, GuestRng, Result};
use pkcs8::der::asn1::{BitStringRef, OctetStringRef};
use pkcs8::der::{Decode, Encode};
use pkcs8::{AlgorithmIdentifierRef, ObjectIdentifier, PrivateKeyInfo};
use spki::SubjectPublicKeyInfoRef;

/// An octet-key-pair algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Okp {
    /// Ed25519 signatures.
    Ed25519,
    /// X25519 key agreement.
    X25519,
}

impl Okp {
    /// The algorithm named `name`.
    pub fn parse(name: &str) -> Result<Okp> {
        match name {
            "Ed25519" => Ok(Okp::Ed25519),
            "X25519" => Ok(Okp::X25519),
            _ => Err(CryptoError::NotSupported(format!(
                "Unsupported algorithm: {name}"
            ))),
        }
    }

    fn oid(self) -> ObjectIdentifier {
        match self {
            Okp::Ed25519 => ObjectIdentifier::new_unwrap("1.3.101.112"),
            Okp::X25519 => ObjectIdentifier::new_unwrap("1.3.101.110"),
        }
    }

    fn algorithm(self) -> AlgorithmIdentifierRef<'static> {
        AlgorithmIdentifierRef {
            oid: self.oid(),
            parameters: None,
        }
    }

    /// The public key of a 32-byte private key.
    fn public(self, secret: &[u8; 32]) -> [u8; 32] {
        match self {
            Okp::Ed25519 => ed25519_dalek::SigningKey::from_bytes(secret)
                .verifying_key()
                .to_bytes(),
            Okp::X25519 => {
                x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(*secret)).to_bytes()
            }
        }
    }
}

fn encode_err<E>(_: E) -> CryptoError {
    CryptoError::op("cannot encode the key")
}

/// PKCS#8 v1 of a 32-byte private key (CurvePrivateKey is an OCTET STRING inside).
fn pkcs8_of(alg: Okp, secret: &[u8; 32]) -> Result<Vec<u8>> {
    let inner = OctetStringRef::new(secret)
        .map_err(encode_err)?
        .to_der()
        .map_err(encode_err)?;
    PrivateKeyInfo {
        algorithm: alg.algorithm(),
        private_key: &inner,
        public_key: None,
    }
    .to_der()
    .map_err(encode_err)
}

/// SPKI of a 32-byte public key.
fn spki_of(alg: Okp, public: &[u8]) -> Result<Vec<u8>> {
    SubjectPublicKeyInfoRef {
        algorithm: alg.algorithm(),
        subject_public_key: BitStringRef::from_bytes(public).map_err(encode_err)?,
    }
    .to_der()
    .map_err(encode_err)
}

/// The 32-byte private key inside a PKCS#8 document for `alg`.
pub fn secret_of(alg: Okp, der: &[u8]) -> Result<[u8; 32]> {
    let info =
        PrivateKeyInfo::from_der(der).map_err(|_| CryptoError::data("Invalid PKCS#8 key"))?;
    if info.algorithm.oid != alg.oid() || info.algorithm.parameters.is_some() {
        return Err(CryptoError::data(
            "The PKCS#8 key is not for this algorithm",
        ));
    }
    let inner = OctetStringRef::from_der(info.private_key)
        .map_err(|_| CryptoError::data("Invalid PKCS#8 private key"))?;
    inner
        .as_bytes()
        .try_into()
        .map_err(|_| CryptoError::data("The private key must be 32 bytes"))
}

/// The 32-byte public key inside an SPKI document for `alg`.
pub fn public_of_spki(alg: Okp, der: &[u8]) -> Result<[u8; 32]> {
    let info = SubjectPublicKeyInfoRef::from_der(der)
        .map_err(|_| CryptoError::data("Invalid SPKI key"))?;
    if info.algorithm.oid != alg.oid() || info.algorithm.parameters.is_some() {
        return Err(CryptoError::data("The SPKI key is not for this algorithm"));
    }
    info.subject_public_key
        .as_bytes()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| CryptoError::data("The public key must be 32 bytes"))
}

/// A fresh key pair: (PKCS#8, SPKI).
pub fn generate(alg: Okp) -> Result<(Vec<u8>, Vec<u8>)> {
    let mut secret = [0u8; 32];
    rand_core_06::RngCore::fill_bytes(&mut GuestRng, &mut secret);
    Ok((pkcs8_of(alg, &secret)?, spki_of(alg, &alg.public(&secret))?))
}

/// Imports `data` in `format` ("pkcs8", "spki", "raw" public key): its DER (normalised to
/// PKCS#8 v1 or SPKI) and whether it is private.
pub fn import(alg: Okp, format: &str, data: &[u8]) -> Result<(Vec<u8>, bool)> {
    match format {
        "pkcs8" => Ok((pkcs8_of(alg, &secret_of(alg, data)?)?, true)),
        "spki" => Ok((spki_of(alg, &public_of_spki(alg, data)?)?, false)),
        "raw" if data.len() == 32 => Ok((spki_of(alg, data)?, false)),
        "raw" => Err(CryptoError::data("A raw public key must be 32 bytes")),
        _ => Err(CryptoError::NotSupported(format!(
            "Cannot import this key as {format}"
        ))),
    }
}

/// A key from JWK members (base64url-decoded): PKCS#8 when `d` is given (x must match).
pub fn from_jwk(alg: Okp, d: Option<&[u8]>, x: &[u8]) -> Result<Vec<u8>> {
    let x: [u8; 32] = x
        .try_into()
        .map_err(|_| CryptoError::data("JWK x must be 32 bytes"))?;
    match d {
        Some(d) => {
            let d: [u8; 32] = d
                .try_into()
                .map_err(|_| CryptoError::data("JWK d must be 32 bytes"))?;
            if alg.public(&d) != x {
                return Err(CryptoError::data("JWK d does not match x"));
            }
            pkcs8_of(alg, &d)
        }
        None => spki_of(alg, &x),
    }
}

/// The public key (32 bytes, also JWK x) of a key held as PKCS#8 or SPKI.
pub fn raw_public(alg: Okp, der: &[u8], private: bool) -> Result<[u8; 32]> {
    if private {
        Ok(alg.public(&secret_of(alg, der)?))
    } else {
        public_of_spki(alg, der)
    }
}

/// Ed25519 signature of `data`.
pub fn ed25519_sign(pkcs8: &[u8], data: &[u8]) -> Result<Vec<u8>> {
    use ed25519_dalek::Signer;
    let sk = ed25519_dalek::SigningKey::from_bytes(&secret_of(Okp::Ed25519, pkcs8)?);
    Ok(sk.sign(data).to_bytes().to_vec())
}

/// Whether `sig` is a valid Ed25519 signature of `data`; small-order keys and
/// non-canonical signatures are rejected (verify_strict).
pub fn ed25519_verify(spki: &[u8], sig: &[u8], data: &[u8]) -> Result<bool> {
    let pk = public_of_spki(Okp::Ed25519, spki)?;
    let Ok(vk) = ed25519_dalek::VerifyingKey::from_bytes(&pk) else {
        return Ok(false);
    };
    let Ok(sig) = ed25519_dalek::Signature::from_slice(sig) else {
        return Ok(false);
    };
    Ok(vk.verify_strict(data, &sig).is_ok())
}

/// X25519 shared secret; an all-zero result (a small-order peer key) is an error.
pub fn x25519(pkcs8: &[u8], spki: &[u8]) -> Result<Vec<u8>> {
    let sk = x25519_dalek::StaticSecret::from(secret_of(Okp::X25519, pkcs8)?);
    let pk = x25519_dalek::PublicKey::from(public_of_spki(Okp::X25519, spki)?);
    let shared = sk.diffie_hellman(&pk);
    if !shared.was_contributory() {
        return Err(CryptoError::op("X25519 produced an all-zero secret"));
    }
    Ok(shared.as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::super::test_util::unhex;
    use super::*;

    #[test]
    fn ed25519_rfc8032_test_1() {
        let d = unhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
        let x = unhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
        let sk = from_jwk(Okp::Ed25519, Some(&d), &x).unwrap();
        let pk = from_jwk(Okp::Ed25519, None, &x).unwrap();
        let sig = ed25519_sign(&sk, b"").unwrap();
        assert_eq!(sig, unhex("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"));
        assert!(ed25519_verify(&pk, &sig, b"").unwrap());
        assert!(!ed25519_verify(&pk, &sig, b"x").unwrap());
        assert_eq!(
            import(Okp::Ed25519, "pkcs8", &sk).unwrap(),
            (sk.clone(), true)
        );
        assert_eq!(sk.len(), 48, "PKCS#8 v1 without the public key");
        assert!(import(Okp::X25519, "pkcs8", &sk).is_err());
        assert_eq!(
            raw_public(Okp::Ed25519, &sk, true).unwrap(),
            raw_public(Okp::Ed25519, &pk, false).unwrap()
        );
    }

    #[test]
    fn x25519_rfc7748_agreement() {
        let a = unhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
        let b_pub = unhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
        let sk = pkcs8_of(Okp::X25519, &a.try_into().unwrap()).unwrap();
        let pk = import(Okp::X25519, "raw", &b_pub).unwrap().0;
        assert_eq!(
            x25519(&sk, &pk).unwrap(),
            unhex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
        );
        let zero = import(Okp::X25519, "raw", &[0u8; 32]).unwrap().0;
        assert!(x25519(&sk, &zero).is_err());
    }
}
