//! securityhub-agent: spool directory → decode → finding → queue/batch → Security Hub → acknowledge.
#![forbid(unsafe_code)]

pub mod config; // the one model of config.toml
pub mod spool; // watch the directory, claim files, finish them
pub mod decode; // bytes -> findings: detection, streamed ASFF, scanner converters
pub mod finding; // one finding: raw JSON + the fields we read; defaults, validation, Id
pub mod pipeline; // bounded queue, batcher, acknowledgements, the assembled run
pub mod hub; // Security Hub: SDK call, rate limit, retry policy, sender
pub mod identity; // Region, account and instance from IMDSv2
pub mod service; // signals, systemd notify and watchdog
pub mod status; // the status file and its rendering
pub mod metrics; // the optional Prometheus endpoint
pub mod validate; // the validate command: decode and check without sending
