//! Any text as config.toml: parse, validate, and the error's file:line:column. Never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use securityhub_agent::config::Config;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = Config::parse(text, std::path::Path::new("fuzz.toml")) {
            let _ = e.to_string();
        }
    }
});
