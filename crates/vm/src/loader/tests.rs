//! Loader tests: ELF placement, PT_INTERP, the initial stack.

use super::stack::at;
use super::*;
use crate::config::AllowedPath;

fn space(size: u64) -> (GuestMemory, AddressSpace) {
    let mut mem = GuestMemory::new(size, false).unwrap();
    let mut mm = AddressSpace::new(&mut mem).unwrap();
    let root = mm.root(&mut mem).unwrap();
    mem.set_root(Some(root));
    (mem, mm)
}

#[test]
fn rejects_garbage_and_foreign_elves() {
    let (mut mem, mut mm) = space(64 << 20);
    assert!(matches!(
        load_elf(&mut mem, &mut mm, b"not an elf", "x", Placement::Main, None),
        Err(LoaderError::Parse(_))
    ));
    let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    let mut bad = me.clone();
    bad[18] = 0x28; // e_machine = ARM
    assert!(matches!(
        load_elf(&mut mem, &mut mm, &bad, "x", Placement::Main, None),
        Err(LoaderError::Arch { .. })
    ));
}

#[test]
fn loads_this_test_binary_with_segment_rights() {
    let (mut mem, mut mm) = space(1 << 30);
    let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    let img = load_elf(&mut mem, &mut mm, &me, "/me", Placement::Main, None).unwrap();
    assert!(img.image_end > img.entry && img.entry > img.bias);
    // The ELF header is mapped (read-only) at the lowest segment.
    let phdr_page = img.phdr & !0xfff;
    assert_eq!(
        mem.slice(img.phdr - (img.phdr - phdr_page), 4)
            .unwrap()
            .len(),
        4
    );
    assert!(mem.write(img.entry, &[0xcc]).is_err(), "text is read-only");
    assert!(mm.vmas().iter().any(|v| v.prot == PROT_READ | PROT_EXEC));
    assert!(mm.maps_text().contains("/me"));
}

#[test]
fn dynamic_program_gets_its_interpreter() {
    let (mut mem, mut mm) = space(1 << 30);
    let prog = std::fs::read("/bin/true").unwrap();
    let mut cfg = VmConfig::default();
    // Not allowed: a clear error.
    let e = load_program(&mut mem, &mut mm, &cfg, &prog, "/bin/true").unwrap_err();
    assert!(matches!(e, LoaderError::Interpreter { .. }), "{e}");
    let (mut mem, mut mm) = space(1 << 30);
    cfg.allowed_paths = vec![
        AllowedPath::same("/lib64"),
        AllowedPath::same("/usr/lib"),
        AllowedPath::same("/lib"),
    ];
    let p = load_program(&mut mem, &mut mm, &cfg, &prog, "/bin/true").unwrap();
    assert!(p.main.bias >= DYN_BASE && p.main.bias < DYN_BASE + (2 << 20));
    assert!(
        p.interp_base > p.main.bias,
        "interpreter placed top-down above the PIE"
    );
    assert!(p.start > p.interp_base && p.start != p.main.entry);
    assert_eq!(mem.slice(p.interp_base, 4).unwrap(), b"\x7fELF");
    assert_eq!(mem.slice(p.main.bias, 4).unwrap(), b"\x7fELF");
}

#[test]
fn stack_layout_is_linux_abi() {
    let (mut mem, mut mm) = space(64 << 20);
    let top = map_stack(&mut mem, &mut mm).unwrap();
    let vdso = map_vdso(&mut mem, &mut mm, &[0x7f, b'E', b'L', b'F'])
        .unwrap()
        .unwrap();
    assert!(mem.slice(vdso - 4096, 1).is_ok() && mem.write(vdso - 4096, b"x").is_err());
    assert!(mm.maps_text().contains("[vvar]") && mm.maps_text().contains("[vdso]"));
    let info = StackInfo {
        phdr: 0x400040,
        phent: 56,
        phnum: 4,
        entry: 0x401000,
        base: 0x7f00_0000_0000,
        sysinfo_ehdr: Some(vdso),
        execfn: "/bin/prog".into(),
        fast_page: Some(0x7e00_0000_0000),
    };
    let argv = vec!["prog".to_string(), "arg1".to_string()];
    let env = vec!["A=b".to_string()];
    let cpu = CpuAux {
        hwcap: 0x178b_fbff,
        hwcap2: 0,
        minsigstksz: 3376,
    };
    let sp = build_stack(&mut mem, top, &info, &argv, &env, &cpu, [7; 16]).unwrap();
    assert_eq!(sp % 16, 0);
    // Linux's end marker: a zero word above every string.
    assert_eq!(mem.read_u64(top - 8).unwrap(), 0);
    let auxv = |key: u64| {
        (0..40)
            .map(|i| sp + 48 + i * 16)
            .find(|a| mem.read_u64(*a).unwrap() == key)
            .map(|a| mem.read_u64(a + 8).unwrap())
    };
    assert_eq!(auxv(at::HWCAP), Some(0x178b_fbff));
    assert_eq!(auxv(at::MINSIGSTKSZ), Some(3376));
    assert_eq!(auxv(at::BASE), Some(0x7f00_0000_0000));
    assert_eq!(auxv(at::SYSINFO_EHDR), Some(vdso));
    assert_eq!(auxv(kvmjs_abi::fast::AT_FAST_PAGE), Some(0x7e00_0000_0000));
    assert_eq!(auxv(at::ENTRY), Some(0x401000));
    let execfn = auxv(at::EXECFN).unwrap();
    assert_eq!(mem.read_cstr(execfn, 64).unwrap(), b"/bin/prog");
    assert_eq!(mem.read_u64(sp).unwrap(), 2);
    let a1 = mem.read_u64(sp + 16).unwrap();
    assert_eq!(mem.read_cstr(a1, 64).unwrap(), b"arg1");
    assert_eq!(mem.read_u64(sp + 24).unwrap(), 0);
    let e0 = mem.read_u64(sp + 32).unwrap();
    assert_eq!(mem.read_cstr(e0, 64).unwrap(), b"A=b");
    assert_eq!(mem.read_u64(sp + 40).unwrap(), 0);
    assert_eq!(mem.read_u64(sp + 48).unwrap(), at::PHDR);
    assert_eq!(mem.read_u64(sp + 56).unwrap(), 0x400040);
}
