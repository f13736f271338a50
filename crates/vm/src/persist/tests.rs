//! The format on fabricated snapshots (no KVM needed): round trip, and every refusal.

use super::*;
use crate::caps::inputs::ProbeInputs;
use crate::caps::Caps;
use crate::memory::HotPages;
use crate::process::Process;
use crate::request::{Request, RequestStats};
use kvm_bindings::{kvm_regs, kvm_sregs};

const MIB: u64 = 1 << 20;

fn host(fixture: &str) -> HostFingerprint {
    let text = match fixture {
        "intel-spr-pvm" => include_str!("../caps/fixtures/intel-spr-pvm.txt"),
        "amd-zen4-pvm" => include_str!("../caps/fixtures/amd-zen4-pvm.txt"),
        _ => unreachable!("no fixture {fixture}"),
    };
    let caps = Caps::compute(&ProbeInputs::from_record(text).unwrap()).unwrap();
    HostFingerprint::from_caps(&caps, Some(509))
}

/// A scratch directory with a guest binary and an app file.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("kvmjs-persist-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("guest"), vec![0x7fu8; 10_000]).unwrap();
        std::fs::write(d.join("app.js"), "export default { fetch() {} }").unwrap();
        Dir(d)
    }
    fn guest(&self) -> PathBuf {
        self.0.join("guest")
    }
    fn app(&self) -> PathBuf {
        self.0.join("app.js")
    }
    fn cfg(&self) -> Arc<VmConfig> {
        Arc::new(VmConfig {
            name: "hello".into(),
            address_space: 16 * MIB,
            main_arguments: vec![self.app().to_string_lossy().into_owned()],
            ..VmConfig::default()
        })
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn snapshot(cfg: Arc<VmConfig>, proc: Process, pause_call: Option<(u64, u64)>) -> Snapshot {
    let a = vec![0xa5u8; 4096];
    let b: Vec<u8> = (0..4096).map(|i| i as u8).collect();
    let pages = [(1usize, &a[..]), (77, &b[..])];
    let memory = MemorySnapshot::from_pages(cfg.address_space, false, pages).unwrap();
    let regs = kvm_regs {
        rip: 0x40_1000,
        rsp: 0x7fff_0000,
        rax: 3,
        ..Default::default()
    };
    let mut sregs = kvm_sregs {
        cr3: 0x9000,
        ..Default::default()
    };
    sregs.fs.base = 0x1234;
    let parts = Parts {
        memory,
        regs,
        sregs,
        proc,
        req_ptr: 0x5000,
        cr3: 0x9000,
        boot_stats: RequestStats {
            exits: 10,
            syscalls: 7,
            dirty_pages: 2,
            reset_us: 1.5,
            total_us: 40000.25,
        },
        protected: vec![(0, 0x4000), (0x10_0000, 0x20_0000)],
        slots: FileSlots::new(cfg.address_space, 0, 0),
        tsc_delta: -12345,
        calibration: Some((
            // One bit per page of the 16 MiB memory: 64 words.
            HotPages::from_bitmap([vec![0b1011, 0, 1 << 63], vec![0; 61]].concat()),
            vec![Request {
                headers: vec!["Host: localhost".into()],
                warmup: true,
                ..Request::get("/")
            }],
        )),
        pause_call,
    };
    Snapshot::from_parts(parts, cfg)
}

fn process() -> Process {
    let mut p = Process::new(0x50_0000, 16 * MIB, 8 * MIB, MIB);
    p.fs_base = 0x1234;
    p.thread_names.insert(1, "main".into());
    p.signals.mask = 0x55;
    p
}

fn file_for(d: &Dir, snap: &Snapshot, build: Option<&str>) -> Vec<u8> {
    let mut ident = identity_of(
        snap,
        Path::new("test.snap"),
        &d.guest(),
        host("intel-spr-pvm"),
    )
    .unwrap();
    if let Some(b) = build {
        ident.build = b.into();
    }
    encode(snap, &d.guest(), &ident).unwrap().0
}

fn open(
    d: &Dir,
    bytes: &[u8],
    cfg: Arc<VmConfig>,
    here: &str,
) -> Result<Arc<Snapshot>, PersistError> {
    decode(Path::new("test.snap"), bytes, cfg, &d.guest(), &host(here))
}

#[test]
fn round_trip_keeps_everything() {
    let d = Dir::new("roundtrip");
    let snap = snapshot(d.cfg(), process(), None);
    let bytes = file_for(&d, &snap, None);
    let back = open(&d, &bytes, d.cfg(), "intel-spr-pvm").unwrap();
    let (a, b) = (snap.parts(), back.parts());
    let pages = |p: &crate::snapshot::PartsRef<'_>| -> Vec<(usize, Vec<u8>)> {
        p.memory.pages().map(|(i, b)| (i, b.to_vec())).collect()
    };
    assert_eq!(pages(&a), pages(&b));
    assert_eq!(a.memory.size(), b.memory.size());
    assert_eq!(
        (a.regs.rip, a.regs.rsp, a.regs.rax),
        (b.regs.rip, b.regs.rsp, b.regs.rax)
    );
    assert_eq!(
        (a.sregs.cr3, a.sregs.fs.base),
        (b.sregs.cr3, b.sregs.fs.base)
    );
    assert_eq!(
        (a.req_ptr, a.cr3, a.boot_stats),
        (b.req_ptr, b.cr3, b.boot_stats)
    );
    assert_eq!(a.protected, b.protected);
    assert_eq!(a.proc.mm, b.proc.mm);
    assert_eq!(
        (a.proc.fs_base, &a.proc.thread_names, a.proc.signals.mask),
        (b.proc.fs_base, &b.proc.thread_names, b.proc.signals.mask)
    );
    assert_eq!(a.proc.fds.open_count(), b.proc.fds.open_count());
    let (ca, cb) = (a.calibration.unwrap(), b.calibration.unwrap());
    assert_eq!(ca.0, cb.0);
    assert_eq!(ca.1.len(), cb.1.len());
    assert_eq!(
        (&ca.1[0].headers, ca.1[0].warmup),
        (&cb.1[0].headers, cb.1[0].warmup)
    );
    // Same process, same host: the guest TSC continues (within the time the test took).
    let drift = (a.tsc_delta - b.tsc_delta).unsigned_abs();
    assert!(drift < 10_000_000_000, "tsc delta moved by {drift}");
    // And once more: the restored snapshot writes the same state.
    let again = file_for(&d, &back, None);
    let (s1, s2) = (
        format::decode(&bytes).unwrap(),
        format::decode(&again).unwrap(),
    );
    assert_eq!(s1.identity, s2.identity);
    assert_eq!(s1.pages, s2.pages);
}

#[test]
fn a_file_of_another_build_is_refused() {
    let d = Dir::new("build");
    let snap = snapshot(d.cfg(), process(), None);
    let bytes = file_for(&d, &snap, Some("0.0.9-feedface"));
    let e = open(&d, &bytes, d.cfg(), "intel-spr-pvm").err().unwrap();
    assert!(matches!(e, PersistError::Build { .. }), "{e}");
    assert!(e.to_string().contains("0.0.9-feedface"), "{e}");
}

#[test]
fn a_file_from_a_foreign_host_is_refused() {
    let d = Dir::new("host");
    let snap = snapshot(d.cfg(), process(), None);
    let bytes = file_for(&d, &snap, None);
    let e = open(&d, &bytes, d.cfg(), "amd-zen4-pvm").err().unwrap();
    assert!(matches!(e, PersistError::Host { .. }), "{e}");
    assert_eq!(e.reason(), "host");
    let msg = e.to_string();
    assert!(msg.contains("Intel") && msg.contains("Amd"), "{msg}");
}

#[test]
fn a_changed_or_replaced_guest_binary_is_refused_an_identical_copy_is_not() {
    let d = Dir::new("guest");
    let snap = snapshot(d.cfg(), process(), None);
    let bytes = file_for(&d, &snap, None);
    // A copy with the same bytes (another inode): hashed, accepted.
    let copy = d.0.join("copy");
    std::fs::copy(d.guest(), &copy).unwrap();
    std::fs::rename(&copy, d.guest()).unwrap();
    open(&d, &bytes, d.cfg(), "intel-spr-pvm").unwrap();
    // One byte changed in place, same size.
    let mut g = std::fs::read(d.guest()).unwrap();
    g[5000] ^= 1;
    std::fs::write(d.guest(), &g).unwrap();
    let e = open(&d, &bytes, d.cfg(), "intel-spr-pvm").err().unwrap();
    assert!(matches!(e, PersistError::Guest { .. }), "{e}");
    assert!(e.to_string().contains("sha256"), "{e}");
    // Appended to.
    g[5000] ^= 1;
    g.push(0);
    std::fs::write(d.guest(), &g).unwrap();
    let e = open(&d, &bytes, d.cfg(), "intel-spr-pvm").err().unwrap();
    assert!(matches!(e, PersistError::Guest { .. }), "{e}");
}

#[test]
fn a_changed_app_is_refused() {
    let d = Dir::new("app");
    let snap = snapshot(d.cfg(), process(), None);
    let bytes = file_for(&d, &snap, None);
    std::fs::write(d.app(), "export default { fetch() { return 1 } }").unwrap();
    let e = open(&d, &bytes, d.cfg(), "intel-spr-pvm").err().unwrap();
    match &e {
        PersistError::App { app, .. } => assert_eq!(app, &d.app()),
        _ => panic!("{e}"),
    }
}

#[test]
fn a_changed_module_in_the_app_directory_is_refused() {
    let d = Dir::new("tree");
    let lib = d.0.join("lib");
    std::fs::create_dir_all(lib.join("sub")).unwrap();
    std::fs::write(lib.join("sub/util.js"), "export const x = 1;").unwrap();
    let cfg = Arc::new(VmConfig {
        allowed_paths: vec![crate::config::AllowedPath::same(&lib)],
        ..(*d.cfg()).clone()
    });
    let snap = snapshot(cfg.clone(), process(), None);
    let bytes = file_for(&d, &snap, None);
    open(&d, &bytes, cfg.clone(), "intel-spr-pvm").unwrap();
    std::fs::write(lib.join("sub/util.js"), "export const x = 22;").unwrap();
    let e = open(&d, &bytes, cfg.clone(), "intel-spr-pvm")
        .err()
        .unwrap();
    match &e {
        PersistError::App { app, what, .. } => {
            assert_eq!(app, &lib.join("sub/util.js"));
            assert!(what.contains("changed"), "{e}");
        }
        _ => panic!("{e}"),
    }
    // The snapshot file and its temporary files may live there.
    let snap_path = lib.join("app.snap");
    let own = identity::app_trees(&cfg, &snap_path).unwrap();
    std::fs::write(&snap_path, b"x").unwrap();
    std::fs::write(lib.join(".app.snap.123.tmp"), b"x").unwrap();
    assert_eq!(identity::app_trees(&cfg, &snap_path).unwrap(), own);
}

#[test]
fn a_changed_setting_is_refused_by_name_a_time_limit_is_not() {
    let d = Dir::new("config");
    let snap = snapshot(d.cfg(), process(), None);
    let bytes = file_for(&d, &snap, None);
    let mut cfg = (*d.cfg()).clone();
    cfg.max_request_time = std::time::Duration::from_secs(99);
    open(&d, &bytes, Arc::new(cfg.clone()), "intel-spr-pvm").unwrap();
    cfg.environment.push("A=b".into());
    let e = open(&d, &bytes, Arc::new(cfg), "intel-spr-pvm")
        .err()
        .unwrap();
    match &e {
        PersistError::Config { key, .. } => assert_eq!(key, "environment"),
        _ => panic!("{e}"),
    }
}

#[test]
fn fetch_counters_are_not_settings() {
    let cfg = (*Dir::new("fetchcount").cfg()).clone();
    let before = super::identity::config_digest(&cfg);
    cfg.fetch
        .metrics
        .count
        .fetch_add(3, std::sync::atomic::Ordering::Relaxed);
    let after = super::identity::config_digest(&cfg);
    assert_eq!(super::identity::config_difference(&before, &after), None);
}

#[test]
fn a_file_from_before_a_host_reboot_is_refused() {
    let a = host("amd-zen4-pvm");
    let mut b = a.clone();
    assert_eq!(a.difference(&b), None);
    b.boot_id = "another boot".into();
    let why = a.difference(&b).expect("a reboot is a difference");
    assert!(why.contains("booted again"), "{why}");
    let mut c = a.clone();
    c.tsc_khz = c.tsc_khz.map(|k| k + 150);
    if a.tsc_khz.is_some() {
        assert!(a.difference(&c).unwrap().contains("TSC clock rate"));
    }
}

#[test]
fn truncated_corrupt_and_old_files_are_refused() {
    let d = Dir::new("corrupt");
    let snap = snapshot(d.cfg(), process(), None);
    let bytes = file_for(&d, &snap, None);
    let e = open(&d, &bytes[..bytes.len() / 2], d.cfg(), "intel-spr-pvm")
        .err()
        .unwrap();
    assert!(matches!(e, PersistError::Truncated { .. }), "{e}");
    let mut c = bytes.clone();
    let mid = c.len() / 2;
    c[mid] ^= 0x40;
    let e = open(&d, &c, d.cfg(), "intel-spr-pvm").err().unwrap();
    assert!(matches!(e, PersistError::Corrupt { .. }), "{e}");
    let mut c = bytes.clone();
    c[8] = 0;
    let e = open(&d, &c, d.cfg(), "intel-spr-pvm").err().unwrap();
    assert!(matches!(e, PersistError::Version { found: 0, .. }), "{e}");
    let e = open(&d, b"#!/bin/sh\n", d.cfg(), "intel-spr-pvm")
        .err()
        .unwrap();
    assert!(matches!(e, PersistError::NotSnapshot(_)), "{e}");
}

#[test]
fn state_a_file_cannot_carry_is_refused_at_write_time() {
    let d = Dir::new("unsupported");
    let ident = |s: &Snapshot| {
        identity_of(s, Path::new("test.snap"), &d.guest(), host("intel-spr-pvm")).unwrap()
    };
    // An eventfd.
    let mut p = process();
    let ev = crate::net::eventfd::EventFd::new(p.fds.new_object_id(), 0, false);
    let fd = p
        .fds
        .insert(crate::fs::OpenFile::new(Arc::new(ev), 0), false)
        .unwrap();
    let snap = snapshot(d.cfg(), p, None);
    let e = encode(&snap, &d.guest(), &ident(&snap)).err().unwrap();
    assert!(matches!(e, PersistError::Unsupported { .. }), "{e}");
    assert!(
        e.to_string().contains(&format!("an eventfd (fd {fd})")),
        "{e}"
    );
    // A thread sleeping with a deadline.
    let mut p = process();
    p.tasks.spawn().unwrap();
    p.tasks.block_current(
        crate::tasks::Block::sleep(std::time::Instant::now(), 0),
        crate::tasks::Call {
            nr: 35,
            args: [0; 6],
        },
    );
    let snap = snapshot(d.cfg(), p, None);
    let e = encode(&snap, &d.guest(), &ident(&snap)).err().unwrap();
    assert!(e.to_string().contains(state::no_deadline::REFUSAL), "{e}");
    // A program waiting on its listener.
    let snap = snapshot(d.cfg(), process(), Some((232, 4)));
    let e = encode(&snap, &d.guest(), &ident(&snap)).err().unwrap();
    assert!(e.to_string().contains("listening socket"), "{e}");
}

#[test]
fn writes_are_atomic_and_missing_files_say_so() {
    let d = Dir::new("write");
    let path = d.0.join("hello.snap");
    let e = read(&path, d.cfg(), &d.guest()).err().unwrap();
    assert!(matches!(e, PersistError::Missing(_)), "{e}");
    // A temporary file left by a writer that died (no such pid) is cleaned up.
    let stale = d.0.join(".hello.snap.999999999.0.tmp");
    std::fs::write(&stale, b"half").unwrap();
    // Only once nobody wrote it for a minute (a writer in another PID namespace).
    let young = d.0.join(".hello.snap.999999998.0.tmp");
    std::fs::write(&young, b"live").unwrap();
    let minute_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(61);
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(minute_ago)
        .unwrap();
    write_atomically(&path, b"first").unwrap();
    assert!(!stale.exists());
    assert!(young.exists(), "a temporary file written just now stays");
    std::fs::remove_file(&young).unwrap();
    write_atomically(&path, b"second").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"second");
    let names: Vec<_> = std::fs::read_dir(&d.0)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 3, "no temporary file left: {names:?}");
    let e = write_atomically(&d.0.join("no/such/dir/x.snap"), b"x")
        .err()
        .unwrap();
    assert!(matches!(e, PersistError::Io { .. }), "{e}");
}

#[test]
fn files_changed_during_the_boot_are_not_written_under_the_new_identity() {
    let d = Dir::new("during");
    let path = d.0.join("during.snap");
    let snap = snapshot(d.cfg(), process(), None);
    // The app is edited while the program boots: the file is not written.
    let before = boot_files(&d.cfg(), &path, &d.guest()).unwrap();
    std::fs::write(d.app(), "export default { fetch() { return 1 } }").unwrap();
    let e = write(&snap, &path, &d.guest(), &before).err().unwrap();
    assert_eq!(e.reason(), "changed", "{e}");
    assert!(!path.exists());
    // The guest binary is replaced (by rename) while the program boots: not written.
    let before = boot_files(&d.cfg(), &path, &d.guest()).unwrap();
    std::fs::write(d.0.join("new"), vec![0x7fu8; 10_000]).unwrap();
    std::fs::rename(d.0.join("new"), d.guest()).unwrap();
    let e = write(&snap, &path, &d.guest(), &before).err().unwrap();
    assert_eq!(e.reason(), "changed", "{e}");
    // Nothing changed: written.
    let before = boot_files(&d.cfg(), &path, &d.guest()).unwrap();
    write(&snap, &path, &d.guest(), &before).unwrap();
    assert!(path.exists());
}
