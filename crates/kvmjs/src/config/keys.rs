//! The tinykvm.json keys: those kvmjs reads (`kvmjs keys`, the README table) and the
//! upstream ones it accepts but ignores with a warning.

/// Keys kvmjs reads, with their meaning (kept in one place so warnings and docs agree).
pub const KEYS: &[(&str, &str)] = &[
    (
        "group",
        "group whose settings this program starts from (default \"test\")",
    ),
    (
        "filename",
        "guest program: an ELF (a request-API guest, or with `listen` a Linux server), or a .js app run by its `engine`",
    ),
    (
        "engine",
        "kvmjs: what runs a .js app: \"quickjs\" (default, the kvmjs guest) or \"deno\" (the deno CLI, V8)",
    ),
    (
        "listen",
        "kvmjs: \"ip:port\" a program that serves HTTP itself listens on in the VM (default for engine deno: 127.0.0.1:8000)",
    ),
    (
        "deno",
        "kvmjs: path of the deno CLI for engine deno (else KVMJS_DENO, .deno/bin/deno, PATH)",
    ),
    (
        "concurrency",
        "VMs serving the program in parallel, each on its own thread (1-255, default 2)",
    ),
    (
        "start_vms",
        "kvmjs: VMs started with the program (1 to concurrency, default concurrency); more are forked from its snapshot when requests wait, up to concurrency (cold start cause pool_growth)",
    ),
    (
        "max_boot_time",
        "seconds from start to the guest's first pause (default 16)",
    ),
    (
        "max_request_time",
        "seconds per request before 504 and a reset (default 8)",
    ),
    (
        "max_memory",
        "MB of heap and mappings the guest may use (default 256)",
    ),
    (
        "address_space",
        "MB of identity-mapped guest memory, at least max_memory (default 256)",
    ),
    (
        "max_request_memory",
        "MB a single request may add (default 64)",
    ),
    (
        "ephemeral",
        "reset the VM to its snapshot after every request (default true)",
    ),
    (
        "hugepages",
        "back guest memory with MAP_HUGETLB 2 MB pages (needs reserved huge pages)",
    ),
    (
        "hugepage_arena_size",
        "MB of huge-page arena; any value > 0 backs all guest memory with huge pages",
    ),
    (
        "environment",
        "[\"KEY=value\", ...] added to the guest environment (the JS app's env)",
    ),
    (
        "main_arguments",
        "[\"arg\", ...] passed to the guest (after the app for .js programs)",
    ),
    (
        "allowed_paths",
        "files/directories the guest may read: \"path\" or {\"real\", \"virtual\", \"prefix\"}",
    ),
    (
        "warmup",
        "{\"num_requests\": N, \"url\", \"method\", \"headers\"} sent before the snapshot",
    ),
    (
        "current_working_directory",
        "guest working directory (default \"/\")",
    ),
    (
        "host",
        "kvmjs: Host header value(s) routed to this program (string or list)",
    ),
    (
        "prefix",
        "kvmjs: URL prefix routed to this program (default \"/<name>\")",
    ),
    (
        "idle_timeout",
        "kvmjs: seconds without requests before the program is unloaded (0: never; default 300)",
    ),
    (
        "keep_alive",
        "kvmjs: \"fixed\" (default: unload after idle_timeout) or \"hybrid\" (the ATC'20 hybrid-histogram policy: a per-program idle-time histogram chooses a pre-warm and a keep-alive window; while it learns, a fixed 10 min; idle_timeout caps every window, and idle_timeout 0 leaves them uncapped, up to ~4.4 h)",
    ),
    (
        "max_background_time",
        "kvmjs: seconds of ctx.waitUntil work a VM may run after a response, before it is reset (default 30)",
    ),
    (
        "snapshot_file",
        "kvmjs: file that keeps the program's warm snapshot between runs: restored at pool start instead of booting when it matches this kvmjs build, the host's CPU/KVM, the guest binary, the app files and the settings; otherwise (refused and logged with the reason) or when missing the program boots and the file is (re)written in the background. Not for programs that listen (engine deno, Linux servers). `kvmjs snapshot` writes it ahead of time, `kvmjs snapshot --check` tells whether it is valid here",
    ),
    (
        "queue_size",
        "kvmjs: requests that may wait for a free VM (default 256)",
    ),
    (
        "queue_timeout",
        "kvmjs: seconds a request may wait for a free VM before 503 (default 10)",
    ),
    (
        "max_request_body",
        "kvmjs: MB of request body accepted before 413 (default 16)",
    ),
    (
        "fetch",
        "kvmjs: backends fetch() may reach: {\"allow\": [\"https://host[:port]\", ...], \"timeout\", \"connect_timeout\", \"max_response_size\", \"max_request_body\", \"max_open\", \"max_per_request\"} (nothing allowed by default)",
    ),
];

/// Upstream keys kvmjs accepts but does not act on (warned about, never silently dropped).
pub(super) const IGNORED: &[&str] = &[
    "key",
    "sha256",
    "md5",
    "start",
    "max_storage_time",
    "req_mem_limit_after_reset",
    "limit_workmem_after_req",
    "shared_memory",
    "ephemeral_keep_working_memory",
    "control_ephemeral",
    "request_hugepage_arena_size",
    "request_hugepages",
    "split_hugepages",
    "transparent_hugepages",
    "storage",
    "smp",
    "mmap_backed_files",
    "relocate_fixed_mmap",
    "executable_heap",
    "remapping",
    "executable_remapping",
    "blackout_area",
    "cold_start_file",
    "allow_debug",
    "remote_debug_on_exception",
    "stdout",
    "verbose",
    "verbose_syscalls",
    "verbose_pagetables",
    "server",
    "websocket_server",
    "download",
];
