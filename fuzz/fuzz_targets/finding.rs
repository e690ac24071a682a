//! Any bytes as one raw finding: defaults, validation, Id derivation, routing.
#![no_main]
use libfuzzer_sys::fuzz_target;
use securityhub_agent::finding;

mod common;

fuzz_target!(|data: &[u8]| {
    let _ = finding::prepare(data, &common::options().defaults, time::OffsetDateTime::UNIX_EPOCH);
});
