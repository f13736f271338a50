//! The primitives behind `crypto.subtle` (src/web/75_subtle.js), on RustCrypto crates. The
//! natives are stateless: key material lives in the JS CryptoKey (raw bytes for secret keys,
//! PKCS#8 DER for private keys, SPKI DER for public keys), so a snapshot holds no Rust-side
//! key state and every request starts from the same one. Randomness (key generation, RSA
//! blinding, PSS salts, OAEP seeds) comes from the guest's per-request generator.
//!
//! Errors carry the Web Crypto DOMException name; the JS side rethrows them as
//! DOMExceptions.

mod aes;
mod ec;
mod hash;
mod natives;
mod okp;
mod rsa;

pub use natives::install;

use super::random;

/// Why a Web Crypto operation failed, by the DOMException name the spec gives it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    /// The algorithm, curve or parameter is valid Web Crypto but not implemented here.
    #[error("{0}")]
    NotSupported(String),
    /// The key data or the input is malformed (import of a bad key, a bad JWK member).
    #[error("{0}")]
    Data(String),
    /// The operation itself failed (authentication tag mismatch, bad padding, sizes).
    #[error("{0}")]
    Operation(String),
}

impl CryptoError {
    /// The DOMException name for this error.
    pub fn dom_name(&self) -> &'static str {
        match self {
            CryptoError::NotSupported(_) => "NotSupportedError",
            CryptoError::Data(_) => "DataError",
            CryptoError::Operation(_) => "OperationError",
        }
    }

    fn data(msg: impl Into<String>) -> Self {
        CryptoError::Data(msg.into())
    }

    fn op(msg: impl Into<String>) -> Self {
        CryptoError::Operation(msg.into())
    }
}

/// Result of a crypto primitive.
pub type Result<T> = std::result::Result<T, CryptoError>;

/// The guest's generator in the rand_core 0.6 shape that the RustCrypto crates take.
pub struct GuestRng;

impl rand_core_06::RngCore for GuestRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        random::fill(&mut b);
        u32::from_le_bytes(b)
    }

    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        random::fill(&mut b);
        u64::from_le_bytes(b)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        random::fill(dest);
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> std::result::Result<(), rand_core_06::Error> {
        random::fill(dest);
        Ok(())
    }
}

// The generator is ChaCha20 keyed from the OS and re-keyed per request.
impl rand_core_06::CryptoRng for GuestRng {}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core_06::RngCore;

    #[test]
    fn guest_rng_follows_the_request_seed() {
        let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
        random::reseed([7, 8]);
        GuestRng.fill_bytes(&mut a);
        random::reseed([7, 8]);
        GuestRng.fill_bytes(&mut b);
        assert_eq!(a, b);
        random::reseed([9, 8]);
        GuestRng.fill_bytes(&mut b);
        assert_ne!(a, b);
    }

    #[test]
    fn errors_name_their_dom_exception() {
        assert_eq!(CryptoError::data("x").dom_name(), "DataError");
        assert_eq!(CryptoError::op("x").dom_name(), "OperationError");
        assert_eq!(
            CryptoError::NotSupported("x".into()).dom_name(),
            "NotSupportedError"
        );
    }
}

/// Helpers for the known-answer tests of the crypto modules.
#[cfg(test)]
mod test_util {
    /// Bytes from a hex string (test vectors are written in hex).
    pub fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
