//! Any bytes read as each format in turn (`[[formats.force]]`): ASFF, Trivy, Grype, SARIF,
//! XCCDF. The first byte picks the format, so each decoder gets the whole corpus.
#![no_main]
use std::ops::ControlFlow;

use libfuzzer_sys::fuzz_target;
use securityhub_agent::decode::{self, Format};

mod common;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let format =
        [Format::Asff, Format::Trivy, Format::Grype, Format::Sarif, Format::Xccdf][pick as usize % 5];
    let _ = decode::decode(
        std::io::Cursor::new(rest),
        Some(format),
        &common::options(),
        time::OffsetDateTime::UNIX_EPOCH,
        |_| ControlFlow::Continue(()),
    );
});
