//! The futex model over the task table: waiters are tasks blocked on
//! [`WaitKey::Futex`]; wakes take the oldest matching waiters first. Guest memory is the
//! caller's business (syscalls/tasks.rs reads and compares the words).

use super::{Tasks, WaitKey};

/// FUTEX_BITSET_MATCH_ANY: what plain FUTEX_WAIT/FUTEX_WAKE use.
pub const MATCH_ANY: u32 = u32::MAX;

/// The key a waiter on `addr` blocks on.
pub fn key(addr: u64, bitset: u32) -> WaitKey {
    WaitKey::Futex { addr, bitset }
}

impl Tasks {
    /// FUTEX_WAKE(_BITSET): wakes up to `n` waiters on `addr` whose bitset meets `bitset`.
    pub fn futex_wake(&mut self, addr: u64, n: usize, bitset: u32) -> usize {
        self.wake_where(
            n,
            |k| matches!(k, WaitKey::Futex { addr: a, bitset: b } if *a == addr && b & bitset != 0),
        )
    }

    /// FUTEX_(CMP_)REQUEUE: wakes up to `wake` waiters on `from`, then moves up to
    /// `requeue` of the remaining ones (oldest first) to wait on `to`. Returns woken plus
    /// moved, as Linux does.
    pub fn futex_requeue(&mut self, from: u64, to: u64, wake: usize, requeue: usize) -> usize {
        let woken = self.futex_wake(from, wake, MATCH_ANY);
        let mut moved = 0;
        for (_, keys) in self.blocked_keys_mut() {
            if moved == requeue {
                break;
            }
            let mut hit = false;
            for k in keys.iter_mut() {
                if let WaitKey::Futex { addr, .. } = k {
                    if *addr == from {
                        *addr = to;
                        hit = true;
                    }
                }
            }
            moved += usize::from(hit);
        }
        woken + moved
    }

    /// Whether any task waits on futex `addr`.
    pub fn futex_has_waiters(&self, addr: u64) -> bool {
        self.tasks.values().any(|t| match &t.state {
            super::State::Blocked { block, .. } => block
                .keys
                .iter()
                .any(|k| matches!(k, WaitKey::Futex { addr: a, .. } if *a == addr)),
            _ => false,
        })
    }
}

/// FUTEX_WAKE_OP's encoded operation (`val3`): the new value of the second word and
/// whether the second wake happens, given its old value. `None`: invalid encoding.
pub fn wake_op(encoded: u32, old: u32) -> Option<(u32, bool)> {
    let op = (encoded >> 28) & 0x7;
    let shift_arg = encoded & (8 << 28) != 0;
    let cmp = (encoded >> 24) & 0xf;
    // Both arguments are sign-extended 12-bit fields.
    let sext = |v: u32| ((v << 20) as i32 >> 20) as u32;
    let mut oparg = sext((encoded >> 12) & 0xfff);
    let cmparg = sext(encoded & 0xfff);
    if shift_arg {
        if oparg > 31 {
            return None;
        }
        oparg = 1 << oparg;
    }
    let new = match op {
        0 => oparg,                   // SET
        1 => old.wrapping_add(oparg), // ADD
        2 => old | oparg,             // OR
        3 => old & !oparg,            // ANDN
        4 => old ^ oparg,             // XOR
        _ => return None,
    };
    let (o, c) = (old as i32, cmparg as i32);
    let hit = match cmp {
        0 => o == c,
        1 => o != c,
        2 => o < c,
        3 => o <= c,
        4 => o > c,
        5 => o >= c,
        _ => return None,
    };
    Some((new, hit))
}
