//! AES-GCM, AES-CBC, AES-CTR and AES-KW.

use super::{CryptoError, Result};
use aes::cipher::{
    block_padding::Pkcs7, BlockDecryptMut, BlockEncryptMut, KeyIvInit, StreamCipher,
};
use aes::{Aes128, Aes192, Aes256};
use aes_gcm::aead::consts::{U12, U13, U14, U15, U16};
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::AesGcm;

/// Evaluates `$body` with `$A` the AES type for a key of `$key.len()` bytes.
macro_rules! by_key {
    ($key:expr, $A:ident => $body:expr) => {
        match $key.len() {
            16 => {
                type $A = Aes128;
                $body
            }
            24 => {
                type $A = Aes192;
                $body
            }
            32 => {
                type $A = Aes256;
                $body
            }
            _ => Err(CryptoError::op("AES keys are 128, 192 or 256 bits long")),
        }
    };
}

/// Evaluates `$body` with `$T` the tag size type for `$bits`.
macro_rules! by_tag {
    ($bits:expr, $T:ident => $body:expr) => {
        match $bits {
            96 => {
                type $T = U12;
                $body
            }
            104 => {
                type $T = U13;
                $body
            }
            112 => {
                type $T = U14;
                $body
            }
            120 => {
                type $T = U15;
                $body
            }
            128 => {
                type $T = U16;
                $body
            }
            32 | 64 => Err(CryptoError::NotSupported(
                "AES-GCM tag lengths of 32 and 64 bits are not supported".into(),
            )),
            _ => Err(CryptoError::op(
                "AES-GCM tagLength must be 32, 64, 96, 104, 112, 120 or 128",
            )),
        }
    };
}

/// AES-GCM: ciphertext followed by the tag, or the plaintext of `data` (ciphertext || tag).
pub fn gcm(
    encrypt: bool,
    key: &[u8],
    iv: &[u8],
    aad: &[u8],
    tag_bits: u32,
    data: &[u8],
) -> Result<Vec<u8>> {
    let mut buf = data.to_vec();
    let tag_len = tag_bits as usize / 8;
    if !encrypt && buf.len() < tag_len {
        return Err(CryptoError::op("The ciphertext is shorter than the tag"));
    }
    by_key!(key, A => by_tag!(tag_bits, T => match iv.len() {
        12 => gcm_run::<AesGcm<A, U12, T>>(encrypt, key, iv, aad, &mut buf),
        16 => gcm_run::<AesGcm<A, U16, T>>(encrypt, key, iv, aad, &mut buf),
        _ => Err(CryptoError::NotSupported(
            "AES-GCM IVs of lengths other than 96 and 128 bits are not supported".into(),
        )),
    }))?;
    Ok(buf)
}

fn gcm_run<C: AeadInPlace + KeyInit>(
    encrypt: bool,
    key: &[u8],
    iv: &[u8],
    aad: &[u8],
    buf: &mut Vec<u8>,
) -> Result<()> {
    let c = C::new_from_slice(key).map_err(|_| CryptoError::op("bad AES key length"))?;
    let nonce = aes_gcm::aead::Nonce::<C>::from_slice(iv);
    if encrypt {
        let tag = c
            .encrypt_in_place_detached(nonce, aad, buf)
            .map_err(|_| CryptoError::op("The plaintext is too long for AES-GCM"))?;
        buf.extend_from_slice(&tag);
        Ok(())
    } else {
        let split = buf.len() - C::TagSize::USIZE;
        let tag = aes_gcm::aead::Tag::<C>::clone_from_slice(&buf[split..]);
        buf.truncate(split);
        c.decrypt_in_place_detached(nonce, aad, buf, &tag)
            .map_err(|_| CryptoError::op("Decryption failed"))
    }
}

use aes_gcm::aead::generic_array::typenum::Unsigned;

/// AES-CBC with PKCS#7 padding.
pub fn cbc(encrypt: bool, key: &[u8], iv: &[u8], data: &[u8]) -> Result<Vec<u8>> {
    if iv.len() != 16 {
        return Err(CryptoError::op("AES-CBC iv must be 16 bytes"));
    }
    by_key!(key, A => {
        if encrypt {
            let e = cbc::Encryptor::<A>::new_from_slices(key, iv).expect("sizes checked");
            Ok(e.encrypt_padded_vec_mut::<Pkcs7>(data))
        } else {
            let d = cbc::Decryptor::<A>::new_from_slices(key, iv).expect("sizes checked");
            d.decrypt_padded_vec_mut::<Pkcs7>(data)
                .map_err(|_| CryptoError::op("Decryption failed: bad padding or length"))
        }
    })
}

/// AES-CTR per Web Crypto: only the rightmost `length` bits of the counter block count
/// up, wrapping without touching the rest; reusing a counter value is an error.
pub fn ctr(key: &[u8], counter: &[u8], length: u32, data: &[u8]) -> Result<Vec<u8>> {
    let block: [u8; 16] = counter
        .try_into()
        .map_err(|_| CryptoError::op("AES-CTR counter must be 16 bytes"))?;
    if length == 0 || length > 128 {
        return Err(CryptoError::op("AES-CTR length must be between 1 and 128"));
    }
    let blocks = (data.len() as u128).div_ceil(16);
    if length < 128 && blocks > 1u128 << length {
        return Err(CryptoError::op(
            "The AES-CTR counter would wrap around and repeat",
        ));
    }
    let mask = if length == 128 {
        u128::MAX
    } else {
        (1u128 << length) - 1
    };
    let start = u128::from_be_bytes(block);
    let mut out = data.to_vec();
    let mut cb = start;
    let mut done = 0usize;
    while done < out.len() {
        // Blocks left before the counter bits wrap; within them a full 128-bit increment
        // is the same as a masked one.
        let left = (mask - (cb & mask)).saturating_add(1);
        let take = usize::try_from(left.saturating_mul(16))
            .unwrap_or(usize::MAX)
            .min(out.len() - done);
        by_key!(key, A => {
            let mut c = ctr::Ctr128BE::<A>::new_from_slices(key, &cb.to_be_bytes()).expect("sizes checked");
            c.apply_keystream(&mut out[done..done + take]);
            Ok(())
        })?;
        done += take;
        cb &= !mask;
    }
    Ok(out)
}

/// AES key wrap (RFC 3394).
pub fn kw(wrap: bool, key: &[u8], data: &[u8]) -> Result<Vec<u8>> {
    let fail = |_| {
        CryptoError::op(if wrap {
            "AES-KW wrapping failed: the data must be a multiple of 64 bits, at least 128"
        } else {
            "AES-KW unwrapping failed"
        })
    };
    match key.len() {
        16 => {
            let k = aes_kw::KekAes128::new(key.into());
            if wrap {
                k.wrap_vec(data).map_err(fail)
            } else {
                k.unwrap_vec(data).map_err(fail)
            }
        }
        24 => {
            let k = aes_kw::KekAes192::new(key.into());
            if wrap {
                k.wrap_vec(data).map_err(fail)
            } else {
                k.unwrap_vec(data).map_err(fail)
            }
        }
        32 => {
            let k = aes_kw::KekAes256::new(key.into());
            if wrap {
                k.wrap_vec(data).map_err(fail)
            } else {
                k.unwrap_vec(data).map_err(fail)
            }
        }
        _ => Err(CryptoError::op("AES keys are 128, 192 or 256 bits long")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::unhex;
    use super::*;

    #[test]
    fn gcm_nist_test_case_3() {
        let key = unhex("feffe9928665731c6d6a8f9467308308");
        let iv = unhex("cafebabefacedbaddecaf888");
        let pt = unhex("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255");
        let ct = gcm(true, &key, &iv, b"", 128, &pt).unwrap();
        assert_eq!(
            ct[pt.len()..],
            unhex("4d5c2af327cd64a62cf35abd2ba6fab4")[..]
        );
        assert_eq!(gcm(false, &key, &iv, b"", 128, &ct).unwrap(), pt);
        let short = gcm(true, &key, &iv, b"", 96, &pt).unwrap();
        assert_eq!(short[pt.len()..], ct[pt.len()..pt.len() + 12]);
        let mut bad = ct.clone();
        bad[0] ^= 1;
        assert_eq!(
            gcm(false, &key, &iv, b"", 128, &bad)
                .unwrap_err()
                .dom_name(),
            "OperationError"
        );
    }

    #[test]
    fn ctr_wraps_only_the_counter_bits() {
        let key = [1u8; 16];
        let mut counter = [0u8; 16];
        counter[15] = 0xff;
        // 8 counter bits: block 2 uses ..00 (not ..0100).
        let two = ctr(&key, &counter, 8, &[0u8; 32]).unwrap();
        let mut wrapped = counter;
        wrapped[15] = 0;
        let second = ctr(&key, &wrapped, 8, &[0u8; 16]).unwrap();
        assert_eq!(two[16..], second[..]);
        assert!(ctr(&key, &counter, 1, &[0u8; 48]).is_err());
        // 128 bits: one Ctr128BE stream.
        let c = [0x11u8; 16];
        let whole = ctr(&key, &c, 128, &[0u8; 40]).unwrap();
        let again = ctr(&key, &c, 64, &[0u8; 40]).unwrap();
        assert_eq!(whole, again);
    }

    #[test]
    fn kw_rfc3394_vector() {
        let kek = unhex("000102030405060708090A0B0C0D0E0F");
        let data = unhex("00112233445566778899AABBCCDDEEFF");
        let w = kw(true, &kek, &data).unwrap();
        assert_eq!(w, unhex("1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5"));
        assert_eq!(kw(false, &kek, &w).unwrap(), data);
        assert!(kw(true, &kek, &[0u8; 12]).is_err());
    }

    #[test]
    fn cbc_roundtrip_and_padding_errors() {
        let key = [2u8; 32];
        let iv = [3u8; 16];
        let ct = cbc(true, &key, &iv, b"hello").unwrap();
        assert_eq!(ct.len(), 16);
        assert_eq!(cbc(false, &key, &iv, &ct).unwrap(), b"hello");
        assert!(cbc(false, &key, &iv, &ct[..15]).is_err());
    }
}
