//! The data path assembled: spool reader → bounded queue → batcher/sender → acknowledger.
//! [`run`] takes its shutdown token from the caller, so tests start and stop it like `main` does.

pub mod ack;
pub mod batch;
pub mod queue;
pub mod stats;

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use std::time::Duration;

use crate::config::{Config, DestinationConfig};
use crate::decode::{self, build::Context};
use crate::finding::{Defaults, Route};
use crate::hub::client::{ClientError, HubClient};
use crate::hub::rate::RateSettings;
use crate::hub::sender::{self, SenderSettings};
use crate::identity::{self, IdentityError};
use crate::spool::finish::{self, Claims, Dirs};
use crate::spool::{Reader, WatchError};
use crate::status;
use stats::Snapshot;

/// Keep watching, or read what is there and stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The daemon: watch the spool until shutdown.
    Watch,
    /// `run --once`: deliver every file present at start, then return.
    Once,
}

/// The pipeline could not start or its spool failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The Security Hub client could not be set up.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The spool's directories could not be prepared.
    #[error("cannot prepare {path}: {source}")]
    Dirs {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Watching or scanning the spool failed.
    #[error(transparent)]
    Spool(#[from] WatchError),
}

/// What the service layer (systemd notify, watchdog, status) sees of a running pipeline.
#[derive(Debug, Clone, Default)]
pub struct Observe {
    /// The counters.
    pub stats: Arc<stats::Stats>,
    /// Notified once the spool is watched and scanned.
    pub ready: Arc<tokio::sync::Notify>,
    /// One lane per destination, registered when the pipeline starts.
    pub lanes: Arc<std::sync::Mutex<Vec<Arc<Lane>>>>,
}

impl Observe {
    /// The lanes registered so far.
    pub fn lanes(&self) -> Vec<Arc<Lane>> {
        self.lanes.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// What the service layer sees of one destination's sending loop.
#[derive(Debug)]
pub struct Lane {
    /// `ACCOUNT/REGION` (or the Region alone when the account is not known).
    pub name: String,
    /// The allowed request rate (f64 bits), updated every second by the sending loop.
    pub rate: std::sync::atomic::AtomicU64,
    /// New rate settings from a reload, picked up by the sending loop within a second.
    pub new_rate: std::sync::Mutex<Option<RateSettings>>,
    /// Bumped every second by the sending loop; a stuck loop stops bumping it.
    pub heartbeat: std::sync::atomic::AtomicU64,
}

impl Lane {
    fn new(name: String, rate: f64) -> Self {
        Self { name, rate: rate.to_bits().into(), new_rate: std::sync::Mutex::new(None), heartbeat: 0.into() }
    }

    /// The sending loop's heartbeat count.
    pub fn beats(&self) -> u64 {
        self.heartbeat.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The rate the limiter allows now (requests/s).
    pub fn rate(&self) -> f64 {
        f64::from_bits(self.rate.load(std::sync::atomic::Ordering::Relaxed))
    }
}

/// The rate settings a configuration asks for one destination: its own rate and burst where
/// set, `[rate]` otherwise.
pub fn rate_settings(config: &Config, destination: &DestinationConfig) -> RateSettings {
    RateSettings {
        requests_per_second: destination.requests_per_second.unwrap_or(config.rate.requests_per_second),
        burst: f64::from(destination.burst.unwrap_or(config.rate.burst)),
        adaptive: config.rate.adaptive,
        min_requests_per_second: config.rate.min_requests_per_second,
    }
}

/// Routing for resolved destinations: the first fills missing accounts and product ARNs, each
/// takes its own account (a single destination of unknown account takes any).
/// `fallback_region` stands in where a destination names none.
pub fn defaults_for(destinations: &[DestinationConfig], fallback_region: &str) -> Defaults {
    let region_of = |d: &DestinationConfig| d.region.clone().unwrap_or_else(|| fallback_region.to_owned());
    let first = &destinations[0];
    Defaults {
        region: region_of(first),
        account_id: first.account_id.clone(),
        product_arn: first.product_arn.clone(),
        routes: destinations
            .iter()
            .map(|d| Route {
                region: region_of(d),
                account_id: d.account_id.clone(),
                product_arn: d.product_arn.clone(),
            })
            .collect(),
    }
}

/// Runs the pipeline until `shutdown` (or, with [`Mode::Once`], until the spool is drained).
pub async fn run(
    config: &Config,
    mode: Mode,
    shutdown: CancellationToken,
    observe: Observe,
) -> Result<Snapshot, RunError> {
    let mut destinations = resolve_destinations(&config.destination.0).await;
    let mut clients = Vec::with_capacity(destinations.len());
    for d in &mut destinations {
        let sdk = crate::hub::client::sdk_config(d, config.retry.request_timeout).await?;
        let client = HubClient::from_sdk(&sdk)?;
        d.region = Some(client.region().to_owned());
        // The doctor's checks, logged; they never hold up delivery.
        tokio::spawn(log_preflight(sdk, d.clone(), shutdown.clone()));
        clients.push(client);
    }
    let defaults = defaults_for(&destinations, "");
    let dirs = Dirs {
        failed: config.spool.failed_dir(),
        done: config.spool.done_dir(),
        on_success: config.spool.on_success,
        spool: config.spool.dir.clone(),
        lifecycle: config.lifecycle.archiving().then(|| config.lifecycle.state_dir.clone()),
    };
    dirs.prepare().map_err(|source| RunError::Dirs { path: dirs.failed.clone(), source })?;
    for d in &destinations {
        info!(
            destination = %lane_name(d),
            role = d.role_arn.as_deref().unwrap_or("-"),
            profile = d.profile.as_deref().unwrap_or("-"),
            "destination"
        );
    }
    info!(spool = %config.spool.dir.display(), destinations = destinations.len(), ?mode, "starting");

    let stats = observe.stats.clone();
    let claims = Claims::default();
    let (events, events_rx) = mpsc::unbounded_channel();
    let acknowledger = {
        let (dirs, claims, stats) = (dirs.clone(), claims.clone(), stats.clone());
        std::thread::Builder::new()
            .name("acknowledger".into())
            .spawn(move || finish::run(events_rx, dirs, claims, stats))
            .expect("spawning a thread")
    };
    let budget = queue::Budget::new(config.queue.max_findings, config.queue.max_bytes);
    let mut queues = Vec::with_capacity(destinations.len());
    let mut sending = Vec::with_capacity(destinations.len());
    for (d, client) in destinations.iter().zip(clients) {
        let (queue_tx, queue_rx) = queue::channel();
        queues.push(queue_tx);
        let settings = SenderSettings {
            max_findings: config.batch.max_findings,
            flush_interval: config.batch.flush_interval,
            max_in_flight: config.batch.max_in_flight,
            initial_backoff: config.retry.initial_backoff,
            max_backoff: config.retry.max_backoff,
            access_denied_pause: config.retry.access_denied_pause,
            grace: config.shutdown.grace,
            rate: rate_settings(config, d),
        };
        let lane = Arc::new(Lane::new(lane_name(d), settings.rate.requests_per_second));
        observe.lanes.lock().unwrap_or_else(|e| e.into_inner()).push(lane.clone());
        let task = sender::run(client, queue_rx, settings, observe.clone(), lane, shutdown.clone());
        sending.push(tokio::spawn(task));
    }
    let reporting =
        tokio::spawn(report_status(config.clone(), budget.clone(), observe.clone(), shutdown.clone()));
    let metrics = config.metrics.listen.map(|listen| {
        let collector = crate::metrics::PipelineCollector {
            observe: observe.clone(),
            budget: budget.clone(),
            max: (config.queue.max_findings, config.queue.max_bytes),
            spool: config.spool.dir.clone(),
        };
        tokio::spawn(crate::metrics::serve(listen, collector, shutdown.clone()))
    });

    let reader = Reader {
        dir: config.spool.dir.clone(),
        own_dirs: vec![dirs.failed.clone(), dirs.done.clone()],
        failed_dir: dirs.failed.clone(),
        settle_time: config.spool.settle_time,
        rescan_interval: config.spool.rescan_interval,
        options: decode::Options {
            context: Context::for_host(
                &defaults.region,
                defaults.account_id.as_deref(),
                destinations[0].instance_id.as_deref(),
                &hostname(),
                String::new(),
            ),
            defaults,
            include_passed: config.formats.xccdf_include_passed,
        },
        formats: config.formats.clone(),
        owners: config.spool.owners(),
        lifecycle: config.lifecycle.archiving().then(|| config.lifecycle.clone()),
        budget,
        queue: queue::Lanes(queues),
        events,
        claims,
        stats: stats.clone(),
    };
    let read = match mode {
        Mode::Once => reader.drain_once(shutdown.clone()).await,
        Mode::Watch => reader.watch(shutdown.clone(), observe.ready.clone()).await,
    };
    if let Err(e) = &read {
        error!(error = %e, "the spool reader failed; stopping");
        shutdown.cancel();
    }
    // The reader is gone, so the queue closes once drained and the sender returns.
    for task in sending {
        if let Err(e) = task.await {
            error!(error = %e, "a sender failed");
        }
    }
    reporting.abort();
    if let Some(m) = metrics {
        m.abort();
    }
    // Every ticket is closed now; the acknowledger ends when its last event is handled.
    let _ = tokio::task::spawn_blocking(move || acknowledger.join()).await;
    read?;
    Ok(stats.snapshot())
}

/// The configured destinations, the first with Region, account and instance id filled in from
/// the EC2 instance identity document where the configuration leaves them out; the others take
/// the instance id (findings are about this instance whatever account they go to).
pub async fn resolve_destinations(configured: &[DestinationConfig]) -> Vec<DestinationConfig> {
    let mut all = configured.to_vec();
    let d = &mut all[0];
    if !(d.region.is_some() && d.account_id.is_some() && d.instance_id.is_some()) {
        match identity::instance_identity(Duration::from_secs(2)).await {
            Ok(id) => {
                info!(region = %id.region, account = %id.account_id, instance = %id.instance_id, "instance identity from IMDSv2");
                d.region.get_or_insert(id.region);
                d.account_id.get_or_insert(id.account_id);
                d.instance_id.get_or_insert(id.instance_id);
            }
            Err(IdentityError::Disabled) => {}
            Err(e) => warn!(error = %e, "no instance identity; using the configuration and the SDK's chains"),
        }
    }
    let instance = all[0].instance_id.clone();
    for d in &mut all[1..] {
        if d.instance_id.is_none() {
            d.instance_id.clone_from(&instance);
        }
    }
    all
}

/// Logs `doctor`'s checks (all but the import probe) for one destination.
async fn log_preflight(sdk: aws_config::SdkConfig, d: DestinationConfig, shutdown: CancellationToken) {
    use crate::hub::preflight::{self as doctor, Outcome};
    let report = tokio::select! {
        r = doctor::check_with(&sdk, &d, doctor::Depth::Startup) => r,
        () = shutdown.cancelled() => return,
    };
    for c in &report.checks {
        match &c.outcome {
            Outcome::Pass(what) => {
                info!(destination = %report.destination, check = c.name, "preflight: {what}")
            }
            Outcome::Skip(why) => {
                info!(destination = %report.destination, check = c.name, "preflight skipped: {why}")
            }
            Outcome::Fail { problem, fix } => warn!(
                destination = %report.destination,
                check = c.name,
                "preflight failed: {problem}; fix: {fix} (findings are kept and retried)"
            ),
        }
    }
}

/// How logs, status and metrics name a destination.
pub fn lane_name(d: &DestinationConfig) -> String {
    let region = d.region.as_deref().unwrap_or("(region from the SDK chain)");
    match &d.account_id {
        Some(account) => format!("{account}/{region}"),
        None => region.to_owned(),
    }
}

/// Writes the status file every `status.interval` until shutdown.
async fn report_status(config: Config, budget: queue::Budget, observe: Observe, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(config.status.interval);
    let mut warned = false;
    // Scopes go stale in days; a scan of the state directory (about 24 ms at 10,000 scopes) is
    // made once a minute, not at every report.
    let lifecycle = config.lifecycle.archiving();
    let mut scopes: Option<(tokio::time::Instant, status::Scopes)> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let now = std::time::SystemTime::now();
        let (backlog_files, backlog_bytes, oldest_file_age_s) = status::backlog(&config.spool.dir, now);
        let report = status::Report {
            pid: std::process::id(),
            written_unix: now.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            interval_s: config.status.interval.as_secs().max(1),
            backlog_files,
            backlog_bytes,
            oldest_file_age_s,
            in_memory_findings: config.queue.max_findings.saturating_sub(budget.free_findings()) as u64,
            destinations: observe.lanes().iter().map(|l| (l.name.clone(), l.rate())).collect(),
            lifecycle: lifecycle.then(|| {
                if scopes.as_ref().is_none_or(|(at, _)| at.elapsed() >= Duration::from_secs(60)) {
                    let fresh =
                        status::scopes(&config.lifecycle.state_dir, now, config.lifecycle.stale_after);
                    scopes = Some((tokio::time::Instant::now(), fresh));
                }
                scopes.as_ref().map(|(_, s)| s.clone()).unwrap_or_default()
            }),
            counters: observe.stats.snapshot(),
        };
        match status::write(&config.status.path, &report) {
            Ok(()) => warned = false,
            Err(e) if !warned => {
                warn!(path = %config.status.path.display(), error = %e, "cannot write the status file");
                warned = true;
            }
            Err(_) => {}
        }
    }
}

/// This machine's host name, for the default resource of scanner findings.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}
