# Varnish 7.1 (Debian 12) in front of `kvmjs serve`: every request is passed (responses
# are dynamic) to kvmjs, which picks the program named by the first path segment through
# the X-KVMJS-Program header. kvmjs answers 404 for unknown programs.
#
#   varnishd -a 127.0.0.1:6081 -f $PWD/vcl/kvmjs.vcl -n /tmp/varnish -s malloc,64m
#
# The backend address below must match `kvmjs serve --listen` (default 127.0.0.1:8080).
vcl 4.1;

probe kvmjs_health {
    .url = "/healthz";
    .interval = 2s;
    .timeout = 1s;
    .window = 3;
    .threshold = 2;
    .initial = 2;
}

backend kvmjs {
    .host = "127.0.0.1";
    .port = "8080";
    .probe = kvmjs_health;
    .connect_timeout = 1s;
    # Above the largest max_request_time, so kvmjs's own 504 reaches the client.
    .first_byte_timeout = 30s;
    .between_bytes_timeout = 30s;
}

sub vcl_recv {
    set req.backend_hint = kvmjs;
    # A header from the client must not pick a program: only this VCL does.
    unset req.http.X-KVMJS-Program;
    if (req.url ~ "^/[A-Za-z0-9_-]+") {
        set req.http.X-KVMJS-Program = regsub(req.url, "^/([A-Za-z0-9_-]+).*$", "\1");
    }
    return (pass);
}

sub vcl_deliver {
    set resp.http.X-Served-By = "varnish+kvmjs";
}
