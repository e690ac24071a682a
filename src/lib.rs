//! securityhub-agent: spool directory → decode → finding → queue/batch → Security Hub → acknowledge.
#![forbid(unsafe_code)]

pub mod config; // the one model of config.toml
pub mod decode; // bytes -> findings, streamed
pub mod finding; // one finding: raw JSON + the fields we read; defaults, validation, Id
pub mod hub; // Security Hub: SDK call, retry policy, sender
pub mod pipeline; // bounded queue, batcher, acknowledgements, the assembled run
pub mod service;
pub mod spool; // watch the directory, claim files, finish them // signals
