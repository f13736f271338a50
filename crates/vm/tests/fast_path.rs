//! The fast path (crate::fastpath, issue 13): a dynamically linked server gets the
//! preloaded library and answers its per-request socket calls in the VM, so a request costs
//! one VM exit; without it (fast_path off) the same server is served the same answers with
//! an exit per call; a program that scribbles over the fast page fails at most the request
//! it did that in. Needs /dev/kvm and the system C compiler; fails (never skips) without.
//!
//! `cargo test -p kvmjs-vm --test fast_path -- --nocapture` prints the per-request figures.

mod common;
use common::compile_c_file;
use kvmjs_abi::fast::{Page, Slot};
use kvmjs_vm::config::VmConfig;
use kvmjs_vm::request::{Request, RequestStats};
use kvmjs_vm::vm::Vm;
use std::mem::offset_of;
use std::path::{Path, PathBuf};

/// tests/guests/c/epoll-server.c, built dynamically with the system compiler.
fn server() -> PathBuf {
    compile_c_file("epoll-server", "tests/guests/c/epoll-server.c")
}

fn cfg(bin: &Path, ephemeral: bool, fast_path: bool) -> VmConfig {
    // Where the hostile requests scribble: the page's layout as the ABI crate has it.
    let offsets = [
        offset_of!(Page, tx_len),
        offset_of!(Page, current),
        offset_of!(Page, listen_fd),
        offset_of!(Page, slots),
        size_of::<Slot>(),
        offset_of!(Slot, state),
        offset_of!(Slot, rx_len),
    ];
    VmConfig {
        main_arguments: offsets.iter().map(usize::to_string).collect(),
        ephemeral,
        fast_path,
        ..common::c_server_cfg(bin)
    }
}

fn get(vm: &mut Vm, path: &str) -> (String, RequestStats) {
    let r = vm
        .handle(&Request::get(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(r.status, 200, "{path}");
    (
        String::from_utf8_lossy(&r.body).into_owned(),
        vm.last_stats(),
    )
}

#[test]
fn an_epoll_server_costs_one_exit_per_request_and_the_same_answers_without_the_library() {
    let bin = server();
    for ephemeral in [true, false] {
        let mut fast = common::boot(cfg(&bin, ephemeral, true));
        let mut plain = common::boot(cfg(&bin, ephemeral, false));
        let (mut fast_exits, mut plain_exits) = (Vec::new(), Vec::new());
        for i in 1..=20 {
            let path = format!("/r{i}");
            let (a, sa) = get(&mut fast, &path);
            let (b, sb) = get(&mut plain, &path);
            let count = if ephemeral { 1 } else { i };
            assert_eq!(a, format!("count={count} peer=127.0.0.1 path={path}"));
            assert_eq!(a, b, "the library changes no answer");
            fast_exits.push(sa.exits);
            plain_exits.push(sb.exits);
        }
        eprintln!("ephemeral={ephemeral}: exits per request with the library {fast_exits:?}, without {plain_exits:?}");
        assert!(
            fast_exits.iter().all(|&e| e == 1),
            "ephemeral={ephemeral}: every request costs one exit with the library: {fast_exits:?}"
        );
        assert!(
            plain_exits.iter().all(|&e| e >= 5),
            "without the library every call exits: {plain_exits:?}"
        );
    }
}

#[test]
fn a_program_that_scribbles_over_the_fast_page_breaks_at_most_that_request() {
    let bin = server();
    for ephemeral in [true, false] {
        let mut vm = common::boot(cfg(&bin, ephemeral, true));
        let mut served = 0;
        for how in 1..=6 {
            let r = vm.handle(&Request::get(&format!("/corrupt/{how}")));
            eprintln!(
                "ephemeral={ephemeral} /corrupt/{how}: {}",
                match &r {
                    Ok(r) => format!("{} {:?}", r.status, String::from_utf8_lossy(&r.body)),
                    Err(e) => format!("error: {e}"),
                }
            );
            if r.is_ok() {
                served += 1;
            }
            // The next requests are answered, and correctly; from the snapshot (ephemeral)
            // at one exit each again.
            for i in 0..3 {
                let (body, st) = get(&mut vm, &format!("/after{how}.{i}"));
                assert!(
                    body.ends_with(&format!("peer=127.0.0.1 path=/after{how}.{i}")),
                    "after /corrupt/{how}: {body}"
                );
                if ephemeral {
                    assert_eq!(body, format!("count=1 peer=127.0.0.1 path=/after{how}.{i}"));
                    assert_eq!(st.exits, 1, "after /corrupt/{how}: back to one exit");
                }
            }
        }
        eprintln!("ephemeral={ephemeral}: {served} of 6 corrupting requests still answered");
    }
}

#[test]
fn a_response_larger_than_the_tx_area_continues_through_the_host() {
    let bin = server();
    for ephemeral in [true, false] {
        let mut vm = common::boot(cfg(&bin, ephemeral, true));
        for n in [400_000usize, 2_000_000] {
            let r = vm
                .handle(&Request::get(&format!("/big/{n}")))
                .unwrap_or_else(|e| panic!("/big/{n}: {e}"));
            assert_eq!(r.status, 200);
            assert_eq!(r.body.len(), n);
            assert!(r.body.iter().all(|&b| b == b'x'));
            eprintln!(
                "ephemeral={ephemeral} /big/{n}: {} exits",
                vm.last_stats().exits
            );
            let (body, st) = get(&mut vm, "/small");
            assert!(body.ends_with("path=/small"), "{body}");
            if ephemeral {
                assert_eq!(st.exits, 1);
            }
        }
    }
}

#[test]
fn a_level_triggered_server_is_answered_and_still_sees_the_host_s_events() {
    let bin = server();
    for ephemeral in [true, false] {
        let mut c = cfg(&bin, ephemeral, true);
        c.main_arguments.push("lt".into());
        let mut vm = common::boot(c);
        let mut exits = Vec::new();
        for i in 1..=10 {
            let (body, st) = get(&mut vm, &format!("/lt{i}"));
            let count = if ephemeral { 1 } else { i };
            assert_eq!(body, format!("count={count} peer=127.0.0.1 path=/lt{i}"));
            exits.push(st.exits);
        }
        eprintln!("level-triggered, ephemeral={ephemeral}: exits per request {exits:?}");
        // A level-triggered event costs a look at the host's descriptors too (without
        // waiting), still far fewer exits than one per call.
        assert!(exits.iter().all(|&e| e <= 4), "{exits:?}");
    }
}
