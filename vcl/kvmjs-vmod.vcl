# Varnish 7.1 (Debian 12) with kvmjs inside: the kvmjs VMOD (crates/vmod) runs the
# programs of tinykvm.json in varnishd itself, so a request goes from Varnish's worker
# to a warm micro-VM with no HTTP hop (compare vcl/kvmjs.vcl, which proxies to
# `kvmjs serve`). Each program is a backend; the first path segment picks it, as in
# kvmjs.vcl, and anything else is routed as `kvmjs serve` routes (Host, prefix,
# /metrics, /healthz).
#
#   crates/vmod/build.sh                 # target/vmod/libvmod_kvmjs.so + kvmjs-guest
#   KVMJS_CONFIG=$PWD/tinykvm.json KVMJS_GUEST=$PWD/target/vmod/kvmjs-guest \
#   varnishd -j none -a 127.0.0.1:6081 -f $PWD/vcl/kvmjs-vmod.vcl -n /tmp/varnish-kvmjs \
#       -p vmod_path=$PWD/target/vmod:/usr/lib/x86_64-linux-gnu/varnish/vmods
#
# (vmod_path lists Varnish's own directory too, for std.) `-j none` (or a jail user
# that may open /dev/kvm): the VMs run in varnishd's child.
vcl 4.1;

import std;
import kvmjs;

# Every request goes to a kvmjs backend picked in vcl_backend_fetch.
backend default none;

# kvmjs's own /metrics and /healthz: for the local monitoring only.
acl kvmjs_admin {
    "127.0.0.1";
    "::1";
}

sub vcl_init {
    # The paths come from the environment so that this file needs no editing:
    # KVMJS_CONFIG the tinykvm.json, KVMJS_GUEST the QuickJS guest (kvmjs-guest).
    kvmjs.library(std.getenv("KVMJS_CONFIG"));
}

sub vcl_recv {
    # A header from the client must not pick a program: only this VCL does.
    unset req.http.X-KVMJS-Program;
    if (req.url ~ "^/(metrics|healthz)(\?|$)" && client.ip !~ kvmjs_admin) {
        return (synth(403, "Forbidden"));
    }
    # Responses are dynamic, made per request in a fresh VM.
    return (pass);
}

sub vcl_backend_fetch {
    set bereq.http.X-KVMJS-Name = regsub(bereq.url, "^/([A-Za-z0-9_-]+).*$", "\1");
    if (bereq.url ~ "^/[A-Za-z0-9_-]+" && kvmjs.has_program(bereq.http.X-KVMJS-Name)) {
        set bereq.backend = kvmjs.program(bereq.http.X-KVMJS-Name);
    } else {
        set bereq.backend = kvmjs.backend();
    }
    unset bereq.http.X-KVMJS-Name;
}

sub vcl_deliver {
    set resp.http.X-Served-By = "varnish+kvmjs-vmod";
}
