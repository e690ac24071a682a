//! securityhub-agent: spool directory → decode → finding → queue/batch → Security Hub → acknowledge.
#![forbid(unsafe_code)]

pub mod config;
pub mod decode;
pub mod finding;
