//! Per-VM figures of the Linux system calls a guest made: how often each one, and which
//! ones got ENOSYS (`kvmjs run` prints both; they say what a new program still lacks).

use super::{errno, Flow};
use std::collections::BTreeMap;

/// Call counts of one VM since it was created (never reset with the snapshot: they count
/// host work, which a reset does not undo).
#[derive(Clone, Debug, Default)]
pub struct SyscallCounts {
    /// Calls by number; grown on demand.
    by_nr: Vec<u64>,
    /// Calls that returned -ENOSYS, by number.
    enosys: BTreeMap<u64, u64>,
}

/// Numbers above this are counted in one bucket each through the map only (a hostile
/// guest must not make the host allocate per distinct number).
const MAX_NR: u64 = 1024;

impl SyscallCounts {
    /// Counts call `nr`, which the handler answered with `flow`.
    pub fn record(&mut self, nr: u64, flow: &Flow) {
        let i = nr.min(MAX_NR) as usize;
        if self.by_nr.len() <= i {
            self.by_nr.resize(i + 1, 0);
        }
        self.by_nr[i] += 1;
        if matches!(flow, Flow::Return(v) if *v as i64 == -i64::from(errno::ENOSYS)) {
            *self.enosys.entry(nr.min(MAX_NR)).or_default() += 1;
        }
    }

    /// All calls counted.
    pub fn total(&self) -> u64 {
        self.by_nr.iter().sum()
    }

    /// `(number, count)` of every call made, most frequent first (ties by number).
    pub fn histogram(&self) -> Vec<(u64, u64)> {
        let mut v: Vec<(u64, u64)> = self
            .by_nr
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(nr, &n)| (nr as u64, n))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }

    /// `(number, count)` of the calls that got ENOSYS, by number.
    pub fn enosys(&self) -> Vec<(u64, u64)> {
        self.enosys.iter().map(|(&nr, &n)| (nr, n)).collect()
    }

    /// The Linux name of call `nr` ("nr N" for numbers Linux does not have; numbers of
    /// [`MAX_NR`] and above share one bucket).
    pub fn name(nr: u64) -> String {
        if nr >= MAX_NR {
            return format!("nr>={MAX_NR}");
        }
        syscalls::Sysno::new(nr as usize).map_or_else(|| format!("nr {nr}"), |s| s.name().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_calls_and_enosys_by_number() {
        let mut c = SyscallCounts::default();
        let enosys = Flow::err(errno::ENOSYS);
        c.record(1, &Flow::ok(3));
        c.record(1, &Flow::ok(3));
        c.record(0, &Flow::err(errno::EBADF));
        c.record(425, &enosys);
        c.record(u64::MAX, &enosys);
        c.record(u64::MAX - 1, &enosys);
        assert_eq!(c.total(), 6);
        assert_eq!(c.histogram(), vec![(1, 2), (MAX_NR, 2), (0, 1), (425, 1)]);
        assert_eq!(c.enosys(), vec![(425, 1), (MAX_NR, 2)]);
        assert!(c.by_nr.len() <= MAX_NR as usize + 1);
        assert_eq!(SyscallCounts::name(1), "write");
        assert_eq!(SyscallCounts::name(425), "io_uring_setup");
        assert_eq!(SyscallCounts::name(MAX_NR + 5), "nr>=1024");
    }
}
