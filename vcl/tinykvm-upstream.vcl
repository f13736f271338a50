# For upstream libvmod-tinykvm (Varnish >= 7.2 on hardware KVM, VMX/SVM), which runs the
# same guest binary in-process. UNTESTED here: Debian 12 ships Varnish 7.1.1, which the
# vmod does not support, and these machines' KVM is PVM, where upstream TinyKVM cannot
# run guests (see shared/research/tinykvm-abi.md section 8).
#
# The kvmjs guest detects upstream TinyKVM (no KVMJS_HOST in its environment) and then
# uses the upstream `out` call form. Paths below assume the repository at /srv/kvmjs.
vcl 4.1;
import tinykvm;

backend default none;

sub vcl_init {
    tinykvm.configure("hello", """{
        "filename": "/srv/kvmjs/target/x86_64-unknown-linux-gnu/release/kvmjs-guest",
        "main_arguments": ["/srv/kvmjs/js/hello.js"],
        "allowed_paths": ["/srv/kvmjs/js"],
        "concurrency": 2,
        "max_request_time": 8,
        "ephemeral": true
    }""");
    tinykvm.configure("renderer", """{
        "filename": "/srv/kvmjs/target/x86_64-unknown-linux-gnu/release/kvmjs-guest",
        "main_arguments": ["/srv/kvmjs/js/renderer.js"],
        "allowed_paths": ["/srv/kvmjs/js"],
        "concurrency": 2,
        "max_request_time": 10
    }""");
}

sub vcl_recv {
    return (pass);
}

sub vcl_backend_fetch {
    if (bereq.url ~ "^/render") {
        set bereq.backend = tinykvm.program("renderer", bereq.url);
    } else {
        set bereq.backend = tinykvm.program("hello", bereq.url);
    }
}
