//! tinykvm.json: arbitrary bytes (comments allowed) must parse or fail with an error,
//! never panic, with either engine as the default for `.js` programs.
#![no_main]

#[path = "../../crates/kvmjs/src/engine.rs"]
#[allow(dead_code)]
mod engine;
#[path = "../../crates/kvmjs/src/config.rs"]
#[allow(dead_code, unused_imports)]
mod config;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let Ok(doc) =
        serde_json::from_reader::<_, serde_json::Value>(json_comments::StripComments::new(rest))
    else {
        return;
    };
    let default_engine = if first & 1 == 0 {
        engine::Engine::Quickjs
    } else {
        engine::Engine::Deno
    };
    let dir = std::env::temp_dir();
    let _ = config::parse(
        &doc,
        std::path::Path::new("fuzz.json"),
        &dir,
        std::path::Path::new("/kvmjs-guest"),
        default_engine,
    );
});
