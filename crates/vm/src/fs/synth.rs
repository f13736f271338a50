//! Files kvmjs makes up from the VM's own state: the /proc and /sys entries programs read
//! at start-up (research: deno reads /proc/self/maps, /proc/self/cgroup, /proc/meminfo,
//! /sys/devices/system/cpu/online, /proc/sys/kernel/osrelease). They describe the VM —
//! one vCPU, its memory limit, its mappings — never the host. The text is produced at
//! open, like a seq_file read in one go; the open file holds an immutable copy.

use super::{CloneMap, File, Kind, SysResult};
use crate::config::VmConfig;
use crate::process::Process;
use std::any::Any;
use std::sync::Arc;

/// The kernel release the VM reports (uname, /proc/sys/kernel/osrelease).
///
/// A modern release, because the system calls kvmjs implements are the modern ones
/// (statx, clone3, faccessat2, epoll_pwait2) and software picks paths by release. V8 then
/// probes protection keys (it does when release >= 5.13): kvmjs answers `pkey_alloc` with
/// ENOSPC, which V8 and glibc take as "no keys" and fall back, at the cost of one exit at
/// start-up (before the snapshot). Reporting an old release (TinyKVM says 3.5.0) would
/// save that exit but lie about everything else.
pub const OS_RELEASE: &str = "6.1.0-kvmjs";

/// A synthesized file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Node {
    /// /proc/self/maps.
    Maps,
    /// /proc/self/cgroup.
    Cgroup,
    /// /proc/self/stat.
    Stat,
    /// /proc/self/status.
    Status,
    /// /proc/self/comm.
    Comm,
    /// /proc/meminfo.
    Meminfo,
    /// /proc/sys/kernel/osrelease.
    OsRelease,
    /// /sys/devices/system/cpu/{online,possible,present}.
    CpuList,
    /// /sys/fs/cgroup/cpu.max.
    CpuMax,
    /// /sys/fs/cgroup/memory.max.
    MemoryMax,
}

impl Node {
    /// The node a normalised path names. /proc/self and /proc/thread-self name the one
    /// process (its pid is 1).
    pub fn by_path(path: &str) -> Option<Node> {
        let p = path
            .strip_prefix("/proc/self/")
            .or_else(|| path.strip_prefix("/proc/thread-self/"))
            .or_else(|| path.strip_prefix("/proc/1/"))
            .map(|rest| format!("/proc/self/{rest}"));
        Some(match p.as_deref().unwrap_or(path) {
            "/proc/self/maps" => Node::Maps,
            "/proc/self/cgroup" => Node::Cgroup,
            "/proc/self/stat" => Node::Stat,
            "/proc/self/status" => Node::Status,
            "/proc/self/comm" => Node::Comm,
            "/proc/meminfo" => Node::Meminfo,
            "/proc/sys/kernel/osrelease" => Node::OsRelease,
            "/sys/devices/system/cpu/online"
            | "/sys/devices/system/cpu/possible"
            | "/sys/devices/system/cpu/present" => Node::CpuList,
            "/sys/fs/cgroup/cpu.max" => Node::CpuMax,
            "/sys/fs/cgroup/memory.max" => Node::MemoryMax,
            _ => return None,
        })
    }

    /// The file's text now.
    pub fn content(self, proc: &Process, cfg: &VmConfig) -> Vec<u8> {
        let comm = comm(proc, cfg);
        match self {
            Node::Maps => maps_text(proc, cfg),
            // cgroup v2, at the root of the VM's own hierarchy.
            Node::Cgroup => "0::/\n".into(),
            Node::Stat => stat_line(proc, &comm),
            Node::Status => format!(
                "Name:\t{comm}\nUmask:\t{:04o}\nState:\tR (running)\nTgid:\t1\nPid:\t1\nPPid:\t0\n\
                 Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nVmRSS:\t{} kB\nThreads:\t1\n\
                 Cpus_allowed:\t1\nCpus_allowed_list:\t0\n",
                proc.fds.umask,
                proc.memory_used() / 1024
            ),
            Node::Comm => format!("{comm}\n"),
            Node::Meminfo => {
                let total = proc.max_memory / 1024;
                let free = proc.max_memory.saturating_sub(proc.memory_used()) / 1024;
                format!(
                    "MemTotal:       {total:8} kB\nMemFree:        {free:8} kB\n\
                     MemAvailable:   {free:8} kB\nBuffers:               0 kB\n\
                     Cached:                0 kB\nSwapTotal:             0 kB\n\
                     SwapFree:              0 kB\n"
                )
            }
            Node::OsRelease => format!("{OS_RELEASE}\n"),
            // One vCPU.
            Node::CpuList => "0\n".into(),
            Node::CpuMax => "max 100000\n".into(),
            Node::MemoryMax => format!("{}\n", proc.max_memory),
        }
        .into_bytes()
    }

    fn ino(self) -> u64 {
        0x1000 + self as u64
    }
}

/// The last component of a program name that may be a path (`kvmjs run` names the
/// program by its path), like Linux's comm and a host name.
pub fn base_name(name: &str) -> &str {
    name.rsplit('/').find(|s| !s.is_empty()).unwrap_or(name)
}

/// The process name (PR_SET_NAME, /proc/self/comm): at most 15 bytes, like Linux.
pub fn comm(proc: &Process, cfg: &VmConfig) -> String {
    match proc.thread_names.get(&1) {
        Some(c) => c.clone(),
        None => base_name(&cfg.name).chars().take(15).collect(),
    }
}

/// /proc/self/maps: the memory map's own description (mm). The one call site.
pub fn maps_text(proc: &Process, _cfg: &VmConfig) -> String {
    proc.mm.maps_text()
}

fn stat_line(proc: &Process, comm: &str) -> String {
    // Fields 1..=52 of proc(5); what a VM does not have is 0.
    let mut f = vec!["0".to_string(); 52];
    f[0] = "1".into();
    f[1] = format!("({comm})");
    f[2] = "R".into();
    f[4] = "1".into(); // pgrp
    f[5] = "1".into(); // session
    f[6] = "-1".into(); // tty_pgrp
    f[17] = "20".into(); // priority
    f[19] = "1".into(); // threads
    f[22] = proc.memory_used().to_string(); // vsize
    f[23] = (proc.memory_used() / 4096).to_string(); // rss pages
    f[24] = u64::MAX.to_string(); // rsslim
    let mut s = f.join(" ");
    s.push('\n');
    s
}

/// An open synthesized file: its text as of open.
#[derive(Debug)]
pub struct SynthFile {
    node: Node,
    path: String,
    data: Arc<[u8]>,
}

impl SynthFile {
    /// Opens `node` (named `path` by the guest) with its current text.
    pub fn open(node: Node, path: &str, proc: &Process, cfg: &VmConfig) -> SynthFile {
        SynthFile {
            node,
            path: path.to_string(),
            data: node.content(proc, cfg).into(),
        }
    }
}

impl File for SynthFile {
    fn kind(&self) -> Kind {
        Kind::Regular
    }

    fn read(&self, buf: &mut [u8], offset: u64, _nonblock: bool) -> SysResult<usize> {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.data.len());
        let n = buf.len().min(self.data.len() - start);
        buf[..n].copy_from_slice(&self.data[start..start + n]);
        Ok(n)
    }

    fn write(&self, _buf: &[u8], _offset: u64, _append: bool) -> SysResult<(usize, u64)> {
        Err(libc::EACCES)
    }

    fn stat(&self) -> SysResult<super::Stat> {
        // proc and sysfs report size 0 (sysfs 4096); readers read to EOF.
        let size = if self.path.starts_with("/sys/") {
            4096
        } else {
            0
        };
        Ok(super::Stat::synthetic(
            Kind::Regular,
            0o444,
            self.node.ino(),
            size,
        ))
    }

    fn size(&self) -> u64 {
        self.data.len() as u64
    }

    fn path(&self) -> Option<&str> {
        Some(&self.path)
    }

    fn deep_clone(&self, _: &mut CloneMap) -> Arc<dyn File> {
        Arc::new(SynthFile {
            node: self.node,
            path: self.path.clone(),
            data: self.data.clone(),
        })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(node: Node, proc: &Process, cfg: &VmConfig) -> String {
        String::from_utf8(node.content(proc, cfg)).unwrap()
    }

    #[test]
    fn proc_files_describe_the_vm() {
        let cfg = VmConfig {
            name: "deno".into(),
            address_space: 64 << 20,
            max_memory: 32 << 20,
            ..Default::default()
        };
        let proc = Process::new(0x60_0000, cfg.address_space, cfg.max_memory, 1 << 20);
        assert_eq!(text(Node::Cgroup, &proc, &cfg), "0::/\n");
        assert_eq!(text(Node::CpuList, &proc, &cfg), "0\n");
        assert_eq!(text(Node::OsRelease, &proc, &cfg), "6.1.0-kvmjs\n");
        let mem = text(Node::Meminfo, &proc, &cfg);
        assert!(mem.starts_with("MemTotal:          32768 kB\n"), "{mem}");
        assert_eq!(text(Node::Maps, &proc, &cfg), proc.mm.maps_text());
        let stat = text(Node::Stat, &proc, &cfg);
        assert!(stat.starts_with("1 (deno) R 0 1 1 -1 "), "{stat}");
        assert_eq!(stat.split(' ').count(), 52);
        assert!(text(Node::Status, &proc, &cfg).contains("Threads:\t1\n"));
        assert_eq!(Node::by_path("/proc/thread-self/comm"), Some(Node::Comm));
        assert_eq!(Node::by_path("/proc/self/mem"), None);
        assert_eq!(base_name("/usr/bin/deno"), "deno");
        assert_eq!(base_name("app"), "app");
    }

    #[test]
    fn open_file_reads_at_offsets() {
        let cfg = VmConfig::default();
        let proc = Process::new(0x60_0000, 64 << 20, 16 << 20, 1 << 20);
        let f = SynthFile::open(Node::OsRelease, "/proc/sys/kernel/osrelease", &proc, &cfg);
        let mut b = [0u8; 4];
        assert_eq!(f.read(&mut b, 0, false), Ok(4));
        assert_eq!(&b, b"6.1.");
        assert_eq!(f.read(&mut b, 8, false), Ok(4));
        assert_eq!(f.read(&mut b, 1 << 40, false), Ok(0));
        assert_eq!(f.write(&b, 0, false), Err(libc::EACCES));
    }
}
