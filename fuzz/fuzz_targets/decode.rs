//! Any bytes as a spool file: detection, then whichever decoder it picks. Never a panic.
#![no_main]
use std::ops::ControlFlow;

use libfuzzer_sys::fuzz_target;
use securityhub_agent::decode;

mod common;

fuzz_target!(|data: &[u8]| {
    let _ = decode::decode(
        std::io::Cursor::new(data),
        None,
        &common::options(),
        time::OffsetDateTime::UNIX_EPOCH,
        |_| ControlFlow::Continue(()),
    );
});
