//! tinykvm.json: arbitrary bytes (comments allowed) must parse or fail with an error,
//! never panic.
#![no_main]

#[path = "../../crates/kvmjs/src/config.rs"]
#[allow(dead_code)]
mod config;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(doc) =
        serde_json::from_reader::<_, serde_json::Value>(json_comments::StripComments::new(data))
    else {
        return;
    };
    let dir = std::env::temp_dir();
    let _ = config::parse(
        &doc,
        std::path::Path::new("fuzz.json"),
        &dir,
        std::path::Path::new("/kvmjs-guest"),
    );
});
