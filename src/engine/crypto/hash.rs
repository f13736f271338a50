//! SHA digests, HMAC, PBKDF2 and HKDF, by Web Crypto hash name.

use super::{CryptoError, Result};
use hmac::{Hmac, Mac};

/// A Web Crypto hash algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    /// SHA-1.
    Sha1,
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl Hash {
    /// The digest length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            Hash::Sha1 => 20,
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }

    /// The hash named `name` (the JS side has already normalised the case).
    pub fn parse(name: &str) -> Result<Hash> {
        match name {
            "SHA-1" => Ok(Hash::Sha1),
            "SHA-256" => Ok(Hash::Sha256),
            "SHA-384" => Ok(Hash::Sha384),
            "SHA-512" => Ok(Hash::Sha512),
            _ => Err(CryptoError::NotSupported(format!(
                "Unrecognized hash algorithm: {name}"
            ))),
        }
    }
}

/// Evaluates `$body` with the type alias `$D` naming the digest type of `$h`.
macro_rules! by_hash {
    ($h:expr, $D:ident => $body:expr) => {
        match $h {
            $crate::engine::crypto::hash::Hash::Sha1 => {
                type $D = sha1::Sha1;
                $body
            }
            $crate::engine::crypto::hash::Hash::Sha256 => {
                type $D = sha2::Sha256;
                $body
            }
            $crate::engine::crypto::hash::Hash::Sha384 => {
                type $D = sha2::Sha384;
                $body
            }
            $crate::engine::crypto::hash::Hash::Sha512 => {
                type $D = sha2::Sha512;
                $body
            }
        }
    };
}
pub(crate) use by_hash;

/// The digest of `data`.
pub fn digest(h: Hash, data: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    by_hash!(h, D => D::digest(data).to_vec())
}

/// The HMAC of `data` under `key`.
pub fn hmac_sign(h: Hash, key: &[u8], data: &[u8]) -> Vec<u8> {
    by_hash!(h, D => {
        let mut m = Hmac::<D>::new_from_slice(key).expect("HMAC takes keys of any length");
        m.update(data);
        m.finalize().into_bytes().to_vec()
    })
}

/// Whether `sig` is the HMAC of `data` under `key` (compared in constant time; a signature
/// of the wrong length is simply not valid).
pub fn hmac_verify(h: Hash, key: &[u8], data: &[u8], sig: &[u8]) -> bool {
    by_hash!(h, D => {
        let mut m = Hmac::<D>::new_from_slice(key).expect("HMAC takes keys of any length");
        m.update(data);
        m.verify_slice(sig).is_ok()
    })
}

/// The largest PBKDF2 output.
pub const MAX_PBKDF2_BYTES: usize = 1 << 20;

/// PBKDF2-HMAC output of `len` bytes.
pub fn pbkdf2(h: Hash, pw: &[u8], salt: &[u8], iterations: u32, len: usize) -> Result<Vec<u8>> {
    if iterations == 0 {
        return Err(CryptoError::op("PBKDF2 iterations must be greater than 0"));
    }
    // DEVIATION: the output is allocated outside the JS heap and its memory limit, so its
    // size is capped; no real use derives more than a few hundred bytes.
    if len > MAX_PBKDF2_BYTES {
        return Err(CryptoError::op(format!(
            "PBKDF2 output is limited to {MAX_PBKDF2_BYTES} bytes in kvmjs"
        )));
    }
    let mut out = vec![0u8; len];
    by_hash!(h, D => pbkdf2::pbkdf2::<Hmac<D>>(pw, salt, iterations, &mut out))
        .expect("HMAC takes keys of any length");
    Ok(out)
}

/// HKDF output of `len` bytes.
pub fn hkdf(h: Hash, ikm: &[u8], salt: &[u8], info: &[u8], len: usize) -> Result<Vec<u8>> {
    // Checked before allocating: HKDF yields at most 255 blocks.
    if len > 255 * h.output_len() {
        return Err(CryptoError::op(
            "HKDF cannot derive that many bits with this hash",
        ));
    }
    let mut out = vec![0u8; len];
    by_hash!(h, D => hkdf::Hkdf::<D>::new(Some(salt), ikm).expand(info, &mut out))
        .map_err(|_| CryptoError::op("HKDF cannot derive that many bits with this hash"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn digests_match_fips_180_vectors() {
        assert_eq!(
            hex(&digest(Hash::Sha256, b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex(&digest(Hash::Sha1, b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert!(Hash::parse("MD5").is_err());
    }

    #[test]
    fn hmac_rfc4231_case_2() {
        let tag = hmac_sign(Hash::Sha256, b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex(&tag),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(hmac_verify(
            Hash::Sha256,
            b"Jefe",
            b"what do ya want for nothing?",
            &tag
        ));
        assert!(!hmac_verify(Hash::Sha256, b"Jefe", b"what", &tag));
        assert!(!hmac_verify(
            Hash::Sha256,
            b"Jefe",
            b"what do ya want for nothing?",
            &tag[..31]
        ));
    }

    #[test]
    fn kdfs_match_rfc_vectors() {
        // RFC 6070 case 2.
        let dk = pbkdf2(Hash::Sha1, b"password", b"salt", 2, 20).unwrap();
        assert_eq!(hex(&dk), "ea6c014dc72d6f8ccd1ed92ace1d41f0d8de8957");
        assert!(pbkdf2(Hash::Sha1, b"p", b"s", 0, 20).is_err());
        assert!(pbkdf2(Hash::Sha1, b"p", b"s", 1, MAX_PBKDF2_BYTES + 1).is_err());
        // RFC 5869 case 3 (empty salt and info).
        let okm = hkdf(Hash::Sha256, &[0x0b; 22], b"", b"", 42).unwrap();
        assert_eq!(
            hex(&okm),
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
        );
        assert!(hkdf(Hash::Sha256, b"k", b"", b"", 255 * 32 + 1).is_err());
    }
}
