# Varnish 7.1 (Debian 12) in front of several `kvmjs serve` nodes, sharded by program.
#
# Each request names its program by the first path segment, as in vcl/kvmjs.vcl. The shard
# director hashes that name onto a consistent-hashing ring of the nodes, so all requests
# for one program go to one node (its primary): only that node boots and keeps the
# program's warm VM pool, instead of every node keeping every program warm. When the
# primary is down, the next node on the ring for that key serves, and only the programs
# whose primary died move (consistent hashing: the others keep their node).
#
#   varnishd -a 127.0.0.1:6081 -f $PWD/vcl/kvmjs-shard.vcl -n /tmp/varnish -s malloc,64m
#
# Every node runs `kvmjs serve --listen <its address>:8080` with the same tinykvm.json.
# To add a node: one more backend, one more add_backend() in vcl_init, and raise the retry
# bound in kvmjs_retry (nodes - 1).
vcl 4.1;

import directors;
import std;

# Short interval: a dead node is marked sick after 2 failed probes (1-2 s) and a restarted
# one healthy again after 2 good ones. Until a death is noticed, requests to that node fail
# to connect and are retried on the next node (vcl_backend_error below), so clients of
# idempotent requests do not see the gap.
probe kvmjs_health {
    .url = "/healthz";
    .interval = 1s;
    .timeout = 500ms;
    .window = 3;
    .threshold = 2;
    .initial = 2;
}

backend node1 {
    .host = "127.0.0.1";
    .port = "8080";
    .probe = kvmjs_health;
    # A refused or silent node is given up quickly: the request moves to the next one.
    .connect_timeout = 1s;
    # Above the largest max_request_time, so kvmjs's own 504 reaches the client.
    .first_byte_timeout = 30s;
    .between_bytes_timeout = 30s;
}

backend node2 {
    .host = "127.0.0.2";
    .port = "8080";
    .probe = kvmjs_health;
    .connect_timeout = 1s;
    .first_byte_timeout = 30s;
    .between_bytes_timeout = 30s;
}

backend node3 {
    .host = "127.0.0.3";
    .port = "8080";
    .probe = kvmjs_health;
    .connect_timeout = 1s;
    .first_byte_timeout = 30s;
    .between_bytes_timeout = 30s;
}

sub vcl_init {
    new kvmjs_nodes = directors.shard();
    # The ring is built from the backend names: every varnishd with this VCL maps a
    # program to the same node, so several Varnish servers can front one set of nodes.
    kvmjs_nodes.add_backend(node1);
    kvmjs_nodes.add_backend(node2);
    kvmjs_nodes.add_backend(node3);
    kvmjs_nodes.reconfigure();
}

sub vcl_recv {
    # A header from the client must not pick a program: only this VCL does.
    unset req.http.X-KVMJS-Program;
    if (req.url ~ "^/[A-Za-z0-9_-]+") {
        set req.http.X-KVMJS-Program = regsub(req.url, "^/([A-Za-z0-9_-]+).*$", "\1");
    }
    # A request body is streamed to the backend once and then gone: when a node takes a
    # PUT's body and dies before answering, Varnish refuses to retry without it. Keep the
    # small bodies of the methods that are retried (see kvmjs_retry) so such a PUT moves to
    # the next node with its body. (A refused connection consumed nothing: that retry
    # works without the copy.) Larger or chunked bodies are streamed as before: such a
    # request is not retried once its body was sent.
    if (req.method ~ "^(PUT|DELETE|OPTIONS|GET)$" &&
        std.integer(req.http.Content-Length, 0) > 0 &&
        std.integer(req.http.Content-Length, 0) <= 1048576) {
        if (!std.cache_req_body(1MB)) {
            return (synth(400, "Request body could not be read"));
        }
    }
    # Responses are dynamic: nothing is cached, every request goes to a node.
    return (pass);
}

sub vcl_backend_fetch {
    # alt = bereq.retries: the first attempt goes to the program's primary (or, when the
    # probe has marked it sick, the first healthy node after it on the ring); each retry
    # skips one more node along the ring. healthy=CHOSEN skips sick nodes.
    if (bereq.http.X-KVMJS-Program) {
        set bereq.backend = kvmjs_nodes.backend(by=KEY,
            key=kvmjs_nodes.key(bereq.http.X-KVMJS-Program),
            alt=bereq.retries, healthy=CHOSEN);
    } else {
        # No program in the path (kvmjs then routes by Host): keep one host on one node.
        set bereq.backend = kvmjs_nodes.backend(by=KEY,
            key=kvmjs_nodes.key("host:" + bereq.http.Host),
            alt=bereq.retries, healthy=CHOSEN);
    }
}

# Retry on the next node only when sending the request again cannot do something twice:
# idempotent methods (RFC 9110 9.2.2). A POST or PATCH may already have run on the node
# that died mid-request (VCL cannot tell a refused connection from a reset after the
# request was sent), so it fails with a 503 instead; once the probe marks the node sick
# (1-2 s) new POSTs go to a healthy node anyway. The bound (nodes - 1 retries, below the
# max_retries parameter's default of 4) tries each node at most once.
sub kvmjs_retry {
    if (bereq.method ~ "^(GET|HEAD|OPTIONS|PUT|DELETE)$" && bereq.retries < 2) {
        return (retry);
    }
}

sub vcl_backend_response {
    # kvmjs answers 503 when it cannot take the request now (pool queue full, body memory,
    # shutting down): another node may well be able to.
    if (beresp.status == 503) {
        call kvmjs_retry;
    }
    set beresp.http.X-KVMJS-Node = beresp.backend.name;
    set beresp.http.X-KVMJS-Retries = bereq.retries;
}

sub vcl_backend_error {
    # Connection refused or reset, or no healthy node.
    call kvmjs_retry;
    set beresp.http.X-KVMJS-Node = bereq.backend;
    set beresp.http.X-KVMJS-Retries = bereq.retries;
}

sub vcl_deliver {
    set resp.http.X-Served-By = "varnish+kvmjs";
}
