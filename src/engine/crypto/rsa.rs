//! RSASSA-PKCS1-v1_5, RSA-PSS and RSA-OAEP on the `rsa` crate. Keys travel as PKCS#8 and
//! SPKI DER (rsaEncryption).

use super::hash::{by_hash, digest, Hash};
use super::{CryptoError, GuestRng, Result};
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use rsa::{BigUint, Oaep, Pkcs1v15Sign, Pss, RsaPrivateKey, RsaPublicKey};

fn bad_key<E>(_: E) -> CryptoError {
    CryptoError::data("Invalid RSA key")
}

/// The largest modulus accepted, in bits (the rsa crate's own default is 4096). RSA work
/// runs in native code that the CPU limit cannot interrupt and grows with the cube of the
/// modulus length, so bigger keys are refused before the crate touches them.
const MAX_BITS: usize = 8192;

fn too_big() -> CryptoError {
    CryptoError::NotSupported(format!(
        "RSA keys with a modulus over {MAX_BITS} bits are not supported"
    ))
}

/// Refuses a modulus (big-endian, as DER holds it) over MAX_BITS.
fn check_modulus(be: &[u8]) -> Result<()> {
    let be = &be[be.iter().take_while(|b| **b == 0).count()..];
    let bits = be
        .first()
        .map_or(0, |b| be.len() * 8 - b.leading_zeros() as usize);
    if bits > MAX_BITS {
        return Err(too_big());
    }
    Ok(())
}

fn private(der: &[u8]) -> Result<RsaPrivateKey> {
    use rsa::pkcs8::der::Decode;
    // Size check first: from_pkcs8_der validates and precomputes the CRT values, which is
    // already costly on a huge modulus.
    let info = rsa::pkcs8::PrivateKeyInfo::from_der(der).map_err(bad_key)?;
    let k = rsa::pkcs1::RsaPrivateKey::from_der(info.private_key).map_err(bad_key)?;
    check_modulus(k.modulus.as_bytes())?;
    RsaPrivateKey::from_pkcs8_der(der).map_err(bad_key)
}

fn public(der: &[u8]) -> Result<RsaPublicKey> {
    use rsa::pkcs8::der::Decode;
    let info = spki::SubjectPublicKeyInfoRef::from_der(der).map_err(bad_key)?;
    if info.algorithm.oid != rsa::pkcs1::ALGORITHM_OID {
        return Err(CryptoError::data("The key is not an RSA key"));
    }
    let bytes = info
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| CryptoError::data("Invalid RSA key"))?;
    let k = rsa::pkcs1::RsaPublicKey::from_der(bytes).map_err(bad_key)?;
    check_modulus(k.modulus.as_bytes())?;
    let n = BigUint::from_bytes_be(k.modulus.as_bytes());
    let e = BigUint::from_bytes_be(k.public_exponent.as_bytes());
    RsaPublicKey::new_with_max_size(n, e, MAX_BITS).map_err(bad_key)
}

fn encode_private(k: &RsaPrivateKey) -> Result<Vec<u8>> {
    Ok(k.to_pkcs8_der()
        .map_err(|_| CryptoError::op("cannot encode the key"))?
        .as_bytes()
        .to_vec())
}

fn encode_public(k: &RsaPublicKey) -> Result<Vec<u8>> {
    Ok(k.to_public_key_der()
        .map_err(|_| CryptoError::op("cannot encode the key"))?
        .as_bytes()
        .to_vec())
}

/// A fresh key pair of `bits` with public exponent `exponent` (big-endian): (PKCS#8, SPKI).
pub fn generate(bits: usize, exponent: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    let e = BigUint::from_bytes_be(exponent);
    // The rsa crate accepts only odd exponents from 3 up to 2^33 - 1; 65537 and 3 are
    // what Web Crypto callers use.
    if e < BigUint::from(3u32)
        || e > BigUint::from((1u64 << 33) - 1)
        || exponent.last().is_none_or(|b| b & 1 == 0)
    {
        return Err(CryptoError::op("Unsupported RSA public exponent"));
    }
    if !(512..=MAX_BITS).contains(&bits) || !bits.is_multiple_of(8) {
        return Err(CryptoError::op(
            "RSA modulusLength must be a multiple of 8 from 512 to 8192",
        ));
    }
    let k = RsaPrivateKey::new_with_exp(&mut GuestRng, bits, &e)
        .map_err(|e| CryptoError::op(format!("RSA key generation failed: {e}")))?;
    Ok((encode_private(&k)?, encode_public(&k.to_public_key())?))
}

/// Imports PKCS#8 or SPKI: the re-encoded DER and whether it is private.
pub fn import(format: &str, der: &[u8]) -> Result<(Vec<u8>, bool)> {
    match format {
        "pkcs8" => {
            let k = private(der)?;
            k.validate().map_err(bad_key)?;
            Ok((encode_private(&k)?, true))
        }
        "spki" => Ok((encode_public(&public(der)?)?, false)),
        _ => Err(CryptoError::NotSupported(format!(
            "RSA keys cannot be imported as {format}"
        ))),
    }
}

/// (modulus length in bits, public exponent big-endian) of a key held as DER.
pub fn info(der: &[u8], is_private: bool) -> Result<(usize, Vec<u8>)> {
    let pk = if is_private {
        private(der)?.to_public_key()
    } else {
        public(der)?
    };
    Ok((pk.n().bits(), pk.e().to_bytes_be()))
}

/// JWK members n, e (and d, p, q, dp, dq, qi when private), big-endian.
pub fn to_jwk(der: &[u8], is_private: bool) -> Result<Vec<Vec<u8>>> {
    if !is_private {
        let k = public(der)?;
        return Ok(vec![k.n().to_bytes_be(), k.e().to_bytes_be()]);
    }
    let k = private(der)?;
    let [p, q] = k.primes() else {
        return Err(CryptoError::NotSupported(
            "multi-prime RSA keys cannot be exported as JWK".into(),
        ));
    };
    let qi = k
        .crt_coefficient()
        .ok_or_else(|| CryptoError::op("no CRT coefficient"))?;
    let (Some(dp), Some(dq)) = (k.dp(), k.dq()) else {
        return Err(CryptoError::op("the key has no CRT values"));
    };
    Ok([k.n(), k.e(), k.d(), p, q, dp, dq, &qi]
        .iter()
        .map(|v| v.to_bytes_be())
        .collect())
}

/// A key from JWK members: PKCS#8 from n, e, d, p, q (the CRT members are recomputed and
/// must match when given), or SPKI from n, e.
pub fn from_jwk(members: &[Option<Vec<u8>>]) -> Result<Vec<u8>> {
    let num = |i: usize| {
        members
            .get(i)
            .and_then(|m| m.as_deref())
            .map(BigUint::from_bytes_be)
    };
    let (Some(n), Some(e)) = (num(0), num(1)) else {
        return Err(CryptoError::data("JWK n and e are required"));
    };
    if n.bits() > MAX_BITS {
        return Err(too_big());
    }
    let Some(d) = num(2) else {
        let k = RsaPublicKey::new_with_max_size(n, e, MAX_BITS).map_err(bad_key)?;
        return encode_public(&k);
    };
    let (Some(p), Some(q)) = (num(3), num(4)) else {
        return Err(CryptoError::NotSupported(
            "RSA private JWKs without p and q are not supported".into(),
        ));
    };
    let k = RsaPrivateKey::from_components(n, e, d, vec![p, q]).map_err(bad_key)?;
    k.validate().map_err(bad_key)?;
    let crt = [k.dp().cloned(), k.dq().cloned(), k.crt_coefficient()];
    for (i, have) in crt.iter().enumerate() {
        if let (Some(given), Some(have)) = (num(5 + i), have) {
            if &given != have {
                return Err(CryptoError::data("JWK dp, dq or qi does not match the key"));
            }
        }
    }
    encode_private(&k)
}

/// A signature scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// RSASSA-PKCS1-v1_5.
    Pkcs1v15,
    /// RSA-PSS with this salt length in bytes.
    Pss(usize),
}

/// The longest PSS salt for key `k` and a hash of `hash_len` bytes (RFC 8017 9.1.1 step 3).
fn max_salt(k: &impl PublicKeyParts, hash_len: usize) -> usize {
    let em_len = k.n().bits().saturating_sub(1).div_ceil(8);
    em_len.saturating_sub(hash_len + 2)
}

/// Signature of `data` hashed with `hash`.
pub fn sign(scheme: Scheme, hash: Hash, pkcs8: &[u8], data: &[u8]) -> Result<Vec<u8>> {
    let k = private(pkcs8)?;
    let hashed = digest(hash, data);
    if let Scheme::Pss(salt) = scheme {
        // Checked here because the rsa crate allocates and fills the salt before it checks
        // it: a saltLength near 2^32 would exhaust memory outside the JS heap limit.
        let max = max_salt(&k, hashed.len());
        if salt > max {
            return Err(CryptoError::op(format!(
                "RSA-PSS saltLength {salt} is too long: at most {max} for this key and hash"
            )));
        }
    }
    let r = match scheme {
        Scheme::Pkcs1v15 => {
            by_hash!(hash, D => k.sign_with_rng(&mut GuestRng, Pkcs1v15Sign::new::<D>(), &hashed))
        }
        Scheme::Pss(salt) => {
            by_hash!(hash, D => k.sign_with_rng(&mut GuestRng, Pss::new_with_salt::<D>(salt), &hashed))
        }
    };
    r.map_err(|e| CryptoError::op(format!("RSA signing failed: {e}")))
}

/// Whether `sig` is a valid signature of `data` hashed with `hash`.
pub fn verify(scheme: Scheme, hash: Hash, spki: &[u8], sig: &[u8], data: &[u8]) -> Result<bool> {
    let k = public(spki)?;
    let hashed = digest(hash, data);
    if let Scheme::Pss(salt) = scheme {
        // The rsa crate adds the salt length to others unchecked (overflow on 64-bit
        // lengths); no valid signature has a longer salt than this.
        if salt > max_salt(&k, hashed.len()) {
            return Ok(false);
        }
    }
    let r = match scheme {
        Scheme::Pkcs1v15 => by_hash!(hash, D => k.verify(Pkcs1v15Sign::new::<D>(), &hashed, sig)),
        Scheme::Pss(salt) => {
            by_hash!(hash, D => k.verify(Pss::new_with_salt::<D>(salt), &hashed, sig))
        }
    };
    Ok(r.is_ok())
}

/// RSA-OAEP encryption (with the public key) or decryption (with the private key).
pub fn oaep(encrypt: bool, hash: Hash, label: &[u8], der: &[u8], data: &[u8]) -> Result<Vec<u8>> {
    // DEVIATION: the rsa crate takes the label as a String, so labels must be UTF-8.
    let label = if label.is_empty() {
        None
    } else {
        Some(
            String::from_utf8(label.to_vec())
                .map_err(|_| CryptoError::NotSupported("RSA-OAEP labels must be UTF-8".into()))?,
        )
    };
    let padding = || {
        let mut p = by_hash!(hash, D => Oaep::new::<D>());
        p.label = label.clone();
        p
    };
    if encrypt {
        public(der)?
            .encrypt(&mut GuestRng, padding(), data)
            .map_err(|_| {
                CryptoError::op("RSA-OAEP encryption failed: the data is too long for the key")
            })
    } else {
        private(der)?
            .decrypt_blinded(&mut GuestRng, padding(), data)
            .map_err(|_| CryptoError::op("Decryption failed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_sign_verify_encrypt() {
        let (sk, pk) = generate(1024, &[1, 0, 1]).unwrap();
        assert_eq!(info(&pk, false).unwrap(), (1024, vec![1, 0, 1]));
        for scheme in [Scheme::Pkcs1v15, Scheme::Pss(32)] {
            let sig = sign(scheme, Hash::Sha256, &sk, b"m").unwrap();
            assert!(verify(scheme, Hash::Sha256, &pk, &sig, b"m").unwrap());
            assert!(!verify(scheme, Hash::Sha256, &pk, &sig, b"n").unwrap());
        }
        let ct = oaep(true, Hash::Sha256, b"l", &pk, b"secret").unwrap();
        assert_eq!(
            oaep(false, Hash::Sha256, b"l", &sk, &ct).unwrap(),
            b"secret"
        );
        assert!(oaep(false, Hash::Sha256, b"", &sk, &ct).is_err());
        let members = to_jwk(&sk, true).unwrap();
        assert_eq!(members.len(), 8);
        let opt: Vec<_> = members.into_iter().map(Some).collect();
        assert_eq!(from_jwk(&opt).unwrap(), sk);
        assert_eq!(from_jwk(&opt[..2]).unwrap(), pk);
        assert!(generate(1024, &[2]).is_err());
    }

    #[test]
    fn pss_salt_is_bounded_before_the_crate_allocates() {
        let (sk, pk) = generate(1024, &[1, 0, 1]).unwrap();
        // emLen 128 - hLen 32 - 2.
        let sig = sign(Scheme::Pss(94), Hash::Sha256, &sk, b"m").unwrap();
        assert!(verify(Scheme::Pss(94), Hash::Sha256, &pk, &sig, b"m").unwrap());
        for salt in [95, u32::MAX as usize, usize::MAX] {
            let e = sign(Scheme::Pss(salt), Hash::Sha256, &sk, b"m").unwrap_err();
            assert_eq!(e.dom_name(), "OperationError");
            assert!(!verify(Scheme::Pss(salt), Hash::Sha256, &pk, &sig, b"m").unwrap());
        }
    }

    #[test]
    fn moduli_over_8192_bits_are_refused() {
        assert_eq!(
            generate(8200, &[1, 0, 1]).unwrap_err().dom_name(),
            "OperationError"
        );
        // An odd 8200-bit modulus: refused on size before any validation.
        let mut n = vec![0xffu8; 1025];
        n[0] = 0x80;
        let e = vec![1, 0, 1];
        let jwk = [Some(n.clone()), Some(e.clone())];
        assert_eq!(from_jwk(&jwk).unwrap_err().dom_name(), "NotSupportedError");
        let jwk = [Some(n.clone()), Some(e.clone()), Some(vec![3])];
        assert_eq!(from_jwk(&jwk).unwrap_err().dom_name(), "NotSupportedError");
        let big = RsaPublicKey::new_with_max_size(
            BigUint::from_bytes_be(&n),
            BigUint::from_bytes_be(&e),
            usize::MAX,
        )
        .unwrap();
        let spki = big.to_public_key_der().unwrap().as_bytes().to_vec();
        let err = import("spki", &spki).unwrap_err();
        assert_eq!(err.dom_name(), "NotSupportedError");
        // 8192 bits exactly is still accepted.
        let ok = RsaPublicKey::new_with_max_size(
            BigUint::from_bytes_be(&n[1..]),
            BigUint::from_bytes_be(&e),
            usize::MAX,
        )
        .unwrap();
        let spki = ok.to_public_key_der().unwrap().as_bytes().to_vec();
        assert!(import("spki", &spki).is_ok());
        // A PKCS#8 key with that modulus (its other values are junk).
        use rsa::pkcs8::der::{asn1::UintRef, Encode};
        let u = |b: &'static [u8]| UintRef::new(b).unwrap();
        let n: &'static [u8] = n.leak();
        let pkcs1 = rsa::pkcs1::RsaPrivateKey {
            modulus: u(n),
            public_exponent: u(&[1, 0, 1]),
            private_exponent: u(&[3]),
            prime1: u(&[5]),
            prime2: u(&[7]),
            exponent1: u(&[1]),
            exponent2: u(&[1]),
            coefficient: u(&[1]),
            other_prime_infos: None,
        }
        .to_der()
        .unwrap();
        let pkcs8 = rsa::pkcs8::PrivateKeyInfo::new(rsa::pkcs1::ALGORITHM_ID, &pkcs1)
            .to_der()
            .unwrap();
        let err = import("pkcs8", &pkcs8).unwrap_err();
        assert_eq!(err.dom_name(), "NotSupportedError");
    }
}
