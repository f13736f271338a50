//! Randomness for crypto.getRandomValues and Math.random: a ChaCha20 generator keyed at
//! boot from the OS and re-keyed per request with the host's fresh `kvm_request.prng`, so
//! requests replayed from the same snapshot still get different numbers, without a VM
//! exit per call.

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use std::cell::RefCell;

thread_local! {
    static RNG: RefCell<(ChaCha20Rng, [u8; 32])> = RefCell::new({
        let mut seed = [0u8; 32];
        fill_os(&mut seed);
        (ChaCha20Rng::from_seed(seed), seed)
    });
}

/// Fills `buf` from the OS (a system call: use at boot only).
pub fn fill_os(buf: &mut [u8]) {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: the pointer and length describe the unfilled tail of `buf`.
        let n = unsafe { libc::getrandom(buf[done..].as_mut_ptr().cast(), buf.len() - done, 0) };
        if n > 0 {
            done += n as usize;
        }
    }
}

/// Re-keys the generator: boot key mixed with the request's fresh 128 bits.
pub fn reseed(fresh: [u64; 2]) {
    RNG.with(|r| {
        let mut r = r.borrow_mut();
        let mut seed = r.1;
        for (i, b) in fresh[0]
            .to_le_bytes()
            .iter()
            .chain(&fresh[1].to_le_bytes())
            .enumerate()
        {
            seed[i] ^= b;
        }
        r.0 = ChaCha20Rng::from_seed(seed);
    });
}

/// Fills `buf` with generator output.
pub fn fill(buf: &mut [u8]) {
    RNG.with(|r| r.borrow_mut().0.fill_bytes(buf));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reseeding_changes_the_stream() {
        let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
        reseed([1, 2]);
        fill(&mut a);
        reseed([1, 2]);
        fill(&mut b);
        assert_eq!(a, b, "same seed, same stream");
        reseed([3, 4]);
        fill(&mut b);
        assert_ne!(a, b);
    }
}
