//! `securityhub-agent validate FILE...`: detect, convert and check files exactly as the daemon
//! would, and print the ASFF it would send — without sending anything.

use std::io::Write;
use std::ops::ControlFlow;
use std::path::Path;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::config::Config;
use crate::decode::{self, Decoded, Options, build::Context};

/// Placeholders when no configuration names an account and Region.
pub const PLACEHOLDER_ACCOUNT: &str = "123456789012";
/// See [`PLACEHOLDER_ACCOUNT`].
pub const PLACEHOLDER_REGION: &str = "us-east-1";

/// How to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// One line per finding: verdict, severity, Id, title (or the reason).
    Summary,
    /// The findings as the agent would send them, one JSON object per line.
    Json,
}

/// Totals over all files.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Findings that would be sent.
    pub valid: u64,
    /// Findings that would be dead-lettered.
    pub rejected: u64,
    /// Files that would be quarantined.
    pub failed_files: u64,
}

/// Decode options from the configuration, with placeholders where it names no account or Region.
pub fn options_from(config: &Config) -> Options {
    let first = config.destination.first();
    let mut defaults = crate::pipeline::defaults_for(&config.destination.0, PLACEHOLDER_REGION);
    defaults.account_id.get_or_insert_with(|| PLACEHOLDER_ACCOUNT.to_owned());
    let context = Context::for_host(
        &defaults.region,
        defaults.account_id.as_deref(),
        first.instance_id.as_deref(),
        &crate::pipeline::hostname(),
        String::new(),
    );
    Options { defaults, context, include_passed: config.formats.xccdf_include_passed }
}

/// Validates each file, printing to `out` (findings) and `err` (per-file verdicts).
pub fn run(
    paths: &[&Path],
    config: &Config,
    output: Output,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> std::io::Result<Totals> {
    let mut totals = Totals::default();
    let now = OffsetDateTime::now_utc();
    let mut options = options_from(config);
    options.context.now = now.format(&Rfc3339).expect("RFC 3339 formatting of a valid time");
    for path in paths {
        let file = match crate::spool::open::open_regular(path, None) {
            Ok((file, _)) => file,
            Err(e) => {
                writeln!(err, "{}: refused: {e}", path.display())?;
                totals.failed_files += 1;
                continue;
            }
        };
        let forced = path.file_name().and_then(|n| config.formats.forced(&n.to_string_lossy()));
        let mut write_error = None;
        let (mut valid, mut rejected) = (0u64, 0u64);
        let result = decode::decode(file, forced, &options, now, |item| {
            let line = match item {
                Decoded::Finding(f) => {
                    valid += 1;
                    match output {
                        Output::Json => String::from_utf8_lossy(&f.json).into_owned(),
                        Output::Summary => {
                            let v: serde_json::Value = serde_json::from_slice(&f.json).unwrap_or_default();
                            let label = v["Severity"]["Label"].as_str().unwrap_or("-").to_owned();
                            format!(
                                "ok        {label:<13} {}  {}",
                                f.id,
                                v["Title"].as_str().unwrap_or_default()
                            )
                        }
                    }
                }
                Decoded::Rejected(r) => {
                    rejected += 1;
                    let id = r.id.unwrap_or_else(|| format!("#{}", r.index));
                    let _ = writeln!(
                        err,
                        "{}: rejected {id}: {} ({})",
                        path.display(),
                        r.rejection,
                        r.rejection.code()
                    );
                    if output == Output::Json {
                        return ControlFlow::Continue(());
                    }
                    format!("rejected  {:<13} {id}  {}", r.rejection.code(), r.rejection)
                }
            };
            if let Err(e) = writeln!(out, "{line}") {
                write_error = Some(e);
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        });
        if let Some(e) = write_error {
            return Err(e);
        }
        match result {
            Ok((format, _)) => {
                writeln!(err, "{}: {format}: {valid} valid, {rejected} rejected", path.display())?
            }
            Err(e) => {
                writeln!(err, "{}: would be quarantined: {e}", path.display())?;
                totals.failed_files += 1;
            }
        }
        totals.valid += valid;
        totals.rejected += rejected;
    }
    Ok(totals)
}
