//! hubsim: a loopback stand-in for AWS Security Hub, for tests and benchmarks.
//!
//! Speaks the real wire protocol (restJson1) of `BatchImportFindings` (`POST /findings/import`)
//! and `GetFindings` (`POST /findings`), refuses unsigned requests and — given test credentials —
//! checks the SigV4 signature over the body, enforces Security Hub's limits, can enforce a quota
//! and inject faults, and records every accepted finding.
#![forbid(unsafe_code)]

pub mod imds;
mod server;
pub mod sigv4;
pub mod sts;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::watch;

pub use sigv4::Credentials;

/// Findings in one request, at most.
pub const MAX_FINDINGS: usize = 100;
/// Bytes of one finding, at most.
pub const MAX_FINDING_BYTES: usize = 240_000;
/// Bytes of one request body, at most.
pub const MAX_BODY_BYTES: usize = 6_000_000;

/// A fault injected into a whole request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFault {
    /// 500 `InternalException`.
    Internal,
    /// 503 `ServiceUnavailable`.
    Unavailable,
    /// 429 `TooManyRequestsException`.
    Throttle,
    /// The connection is closed without a response.
    Drop,
    /// The response is held for this long first.
    Delay(Duration),
}

/// Faults to inject; all rates are probabilities in `[0, 1]`.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Chance that a request gets one of `request_kinds` (picked uniformly).
    pub request_rate: f64,
    /// The request faults to pick from.
    pub request_kinds: Vec<RequestFault>,
    /// Chance that a finding fails with a transient `InternalException` (per attempt).
    pub finding_transient_rate: f64,
    /// Chance that a finding is permanently `InvalidInput` (decided by its Id, so it stays so).
    pub finding_invalid_rate: f64,
}

/// A token bucket quota like Security Hub's (10 requests/s, burst 30).
#[derive(Debug, Clone, Copy)]
pub struct Quota {
    /// Tokens per second.
    pub rate: f64,
    /// Bucket size.
    pub burst: f64,
}

/// How to run the stand-in.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Verify signatures made with any of these credentials; when empty, only the header's
    /// presence and form are checked.
    pub credentials: Vec<Credentials>,
    /// Enforce a request quota.
    pub quota: Option<Quota>,
    /// Inject faults.
    pub faults: Faults,
    /// Seed for the fault dice.
    pub seed: u64,
    /// Roles that `AssumeRole` (STS, on the same endpoint) hands out.
    pub roles: Vec<sts::Role>,
    /// The account of `credentials` (what `GetCallerIdentity` answers; a role's credentials
    /// belong to the role's account). Default: [`DEFAULT_ACCOUNT`].
    pub account: Option<String>,
    /// Security Hub is not enabled: `DescribeHub` and `BatchImportFindings` answer
    /// `InvalidAccessException`.
    pub hub_disabled: bool,
    /// What `ListEnabledProductsForImport` lists (product-subscription ARNs).
    pub product_subscriptions: Vec<String>,
    /// Actions refused with `AccessDeniedException`, e.g. `"BatchImportFindings"`.
    pub denied: Vec<String>,
}

/// The account of the plain test credentials unless [`Options::account`] says otherwise.
pub const DEFAULT_ACCOUNT: &str = "111122223333";

/// What the stand-in has seen.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Import requests received (including refused ones).
    pub requests: u64,
    /// Findings accepted.
    pub accepted: u64,
    /// Accepted findings that replaced an earlier one with the same (ProductArn, Id).
    pub updates: u64,
    /// Accepted findings ignored because their UpdatedAt was not later than the stored one.
    pub stale: u64,
    /// Findings refused in `FailedFindings`.
    pub failed_findings: u64,
    /// Requests refused with 429.
    pub throttled: u64,
    /// Requests refused for a missing or wrong signature.
    pub bad_signatures: u64,
    /// Requests refused as invalid (limits, JSON).
    pub invalid_requests: u64,
    /// Injected request faults.
    pub injected: u64,
    /// Largest number of import requests being handled at once.
    pub max_concurrent: u64,
    /// Most findings seen in one valid request.
    pub largest_request: u64,
    /// `AssumeRole` calls answered with credentials.
    pub assume_role_ok: u64,
    /// `AssumeRole` calls refused (unknown role, wrong external id).
    pub assume_role_denied: u64,
    /// Import requests with a verified signature, by access key id.
    pub signed_by: std::collections::BTreeMap<String, u64>,
}

/// A stored finding: its text as received, and the `UpdatedAt` that decides later updates.
pub(crate) struct Stored {
    pub(crate) raw: Box<serde_json::value::RawValue>,
    pub(crate) updated_at: String,
    /// When a request first brought this finding (Unix nanoseconds), for latency measurements.
    pub(crate) first_seen_ns: u64,
}

impl Stored {
    pub(crate) fn value(&self) -> Value {
        serde_json::from_str(self.raw.get()).expect("stored findings are valid JSON")
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

pub(crate) struct State {
    options: Mutex<Options>,
    findings: Mutex<HashMap<(String, String), Stored>>,
    stats: Mutex<Stats>,
    bucket: Mutex<Bucket>,
    stalled: watch::Sender<bool>,
    concurrent: std::sync::atomic::AtomicU64,
    rng: Mutex<fastrand::Rng>,
}

/// A running stand-in; stops when dropped.
pub struct Hub {
    addr: SocketAddr,
    state: Arc<State>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Hub {
    /// Starts on `127.0.0.1` at a free port.
    pub async fn start(options: Options) -> std::io::Result<Hub> {
        Self::start_on("127.0.0.1:0".parse().expect("a valid address"), options).await
    }

    /// Starts on `addr`.
    pub async fn start_on(addr: SocketAddr, options: Options) -> std::io::Result<Hub> {
        let burst = options.quota.map_or(0.0, |q| q.burst);
        let state = Arc::new(State {
            rng: Mutex::new(fastrand::Rng::with_seed(options.seed)),
            options: Mutex::new(options),
            findings: Mutex::new(HashMap::new()),
            stats: Mutex::new(Stats::default()),
            bucket: Mutex::new(Bucket { tokens: burst, at: Instant::now() }),
            stalled: watch::channel(false).0,
            concurrent: Default::default(),
        });
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel();
        tokio::spawn(server::serve(listener, state.clone(), stopped));
        Ok(Hub { addr, state, _stop: stop })
    }

    /// `http://127.0.0.1:PORT`, for `endpoint_url`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every stored finding (the latest version of each (ProductArn, Id)).
    pub fn findings(&self) -> Vec<Value> {
        self.state.findings.lock().unwrap().values().map(Stored::value).collect()
    }

    /// The stored finding with this Id, if any.
    pub fn finding(&self, id: &str) -> Option<Value> {
        self.state.findings.lock().unwrap().iter().find(|((_, i), _)| i == id).map(|(_, v)| v.value())
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        self.state.stats.lock().unwrap().clone()
    }

    /// While stalled, import requests are held without an answer.
    pub fn set_stalled(&self, stalled: bool) {
        self.state.stalled.send_replace(stalled);
    }

    /// Replaces the fault settings.
    pub fn set_faults(&self, faults: Faults) {
        self.state.options.lock().unwrap().faults = faults;
    }

    /// Waits until `n` findings are stored or `timeout` passes; returns the count.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let have = self.state.findings.lock().unwrap().len();
            if have >= n || Instant::now() >= deadline {
                return have;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
