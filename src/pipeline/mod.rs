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
use crate::finding::Defaults;
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
    /// Bumped every second by the sending loop; a stuck loop stops bumping it.
    pub heartbeat: Arc<std::sync::atomic::AtomicU64>,
    /// The allowed request rate (f64 bits), updated every second by the sending loop.
    pub rate: Arc<std::sync::atomic::AtomicU64>,
    /// New rate settings from a reload, picked up by the sending loop within a second.
    pub new_rate: Arc<std::sync::Mutex<Option<RateSettings>>>,
}

/// The rate settings a configuration asks for.
pub fn rate_settings(config: &Config) -> RateSettings {
    RateSettings {
        requests_per_second: config.rate.requests_per_second,
        burst: f64::from(config.rate.burst),
        adaptive: config.rate.adaptive,
        min_requests_per_second: config.rate.min_requests_per_second,
    }
}

/// Runs the pipeline until `shutdown` (or, with [`Mode::Once`], until the spool is drained).
pub async fn run(
    config: &Config,
    mode: Mode,
    shutdown: CancellationToken,
    observe: Observe,
) -> Result<Snapshot, RunError> {
    let destination = resolve_destination(&config.destination).await;
    let client = HubClient::connect(&destination, config.retry.request_timeout).await?;
    let defaults = Defaults {
        region: client.region().to_owned(),
        account_id: destination.account_id.clone(),
        product_arn: destination.product_arn.clone(),
    };
    let dirs = Dirs {
        failed: config.spool.failed_dir(),
        done: config.spool.done_dir(),
        on_success: config.spool.on_success,
    };
    dirs.prepare().map_err(|source| RunError::Dirs { path: dirs.failed.clone(), source })?;
    info!(region = %client.region(), spool = %config.spool.dir.display(), ?mode, "starting");

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
    let (queue_tx, queue_rx) = queue::channel();
    let settings = SenderSettings {
        max_findings: config.batch.max_findings,
        flush_interval: config.batch.flush_interval,
        max_in_flight: config.batch.max_in_flight,
        initial_backoff: config.retry.initial_backoff,
        max_backoff: config.retry.max_backoff,
        access_denied_pause: config.retry.access_denied_pause,
        grace: config.shutdown.grace,
        rate: rate_settings(config),
    };
    let sending = tokio::spawn(sender::run(client, queue_rx, settings, observe.clone(), shutdown.clone()));
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
                destination.instance_id.as_deref(),
                &hostname(),
                String::new(),
            ),
            defaults,
            include_passed: config.formats.xccdf_include_passed,
        },
        formats: config.formats.clone(),
        owners: config.spool.owners(),
        budget,
        queue: queue_tx,
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
    if let Err(e) = sending.await {
        error!(error = %e, "the sender failed");
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

/// The configured destination, with Region, account and instance id filled in from the EC2
/// instance identity document where the configuration leaves them out.
pub async fn resolve_destination(configured: &DestinationConfig) -> DestinationConfig {
    let mut d = configured.clone();
    if d.region.is_some() && d.account_id.is_some() && d.instance_id.is_some() {
        return d;
    }
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
    d
}

/// Writes the status file every `status.interval` until shutdown.
async fn report_status(config: Config, budget: queue::Budget, observe: Observe, shutdown: CancellationToken) {
    use std::sync::atomic::Ordering;
    let mut tick = tokio::time::interval(config.status.interval);
    let mut warned = false;
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
            rate: f64::from_bits(observe.rate.load(Ordering::Relaxed)),
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
