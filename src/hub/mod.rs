//! The Security Hub sink: the SDK call, the retry policy, and the sending loop.

pub mod client;
pub mod rate;
pub mod retry;
pub mod sender;
pub mod preflight; // doctor: can each destination's findings arrive? (also logged by run at start)
pub mod policy; // iam-policy: least-privilege policies per integration model
