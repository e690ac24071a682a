//! The Security Hub sink: the SDK call, the retry policy, and the sending loop.

pub mod client;
pub mod rate;
pub mod retry;
pub mod sender;
