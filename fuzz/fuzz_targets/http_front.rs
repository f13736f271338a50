//! The HTTP front: raw bytes into a real hyper connection with kvmjs's request handler
//! (routing, limits, /metrics, /healthz; no programs, so every route is a 404). It must
//! answer or close, never panic.
#![no_main]

#[path = "../../crates/kvmjs/src/config.rs"]
#[allow(dead_code, unused_imports)]
mod config;
#[path = "../../crates/kvmjs/src/engine.rs"]
#[allow(dead_code)]
mod engine;
#[path = "../../crates/kvmjs/src/mapped.rs"]
#[allow(dead_code)]
mod mapped;
#[path = "../../crates/kvmjs/src/http.rs"]
#[allow(dead_code)]
mod http;
#[path = "../../crates/kvmjs/src/metrics.rs"]
#[allow(dead_code)]
mod metrics;
#[path = "../../crates/kvmjs/src/pool.rs"]
#[allow(dead_code)]
mod pool;
#[path = "../../crates/kvmjs/src/keepalive.rs"]
#[allow(dead_code)]
mod keepalive;
#[path = "../../crates/kvmjs/src/snapfile.rs"]
#[allow(dead_code)]
mod snapfile;

use hyper_util::rt::TokioIo;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let state = Arc::new(http::State::new(
            Vec::new(),
            Arc::new(metrics::Metrics::default()),
            &http::Limits::default(),
        ));
        let (client, server) = tokio::io::duplex(1 << 16);
        let svc = hyper::service::service_fn(move |req| http::handle(req, state.clone()));
        let mut b = hyper::server::conn::http1::Builder::new();
        b.max_header_size(64 << 10);
        let conn = b.serve_connection(TokioIo::new(server), svc);
        let task = tokio::spawn(conn);
        let (mut rd, mut wr) = tokio::io::split(client);
        let _ = wr.write_all(data).await;
        let _ = wr.shutdown().await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(
            std::time::Duration::from_millis(200),
            rd.read_to_end(&mut out),
        )
        .await;
        task.abort();
    });
});
