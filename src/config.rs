//! The one model of `config.toml`: every key, its default, and the checks run at start.
//! `config.example.toml` mirrors the doc comments here.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Where the daemon looks for its configuration when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/securityhub-agent/config.toml";

/// Security Hub's own limit: findings in one `BatchImportFindings` request.
pub const API_MAX_FINDINGS_PER_REQUEST: usize = 100;

/// A configuration problem, worded for the person editing the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read the configuration: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key or a value of the wrong type.
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line of the offending key or value.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What toml/serde said, with a hint where we have one.
        message: String,
    },
    /// Anyone may change the file: anyone could redirect findings or turn checks off.
    #[error("{path}: the configuration is writable by every user (mode {mode:o}); run: chmod o-w {path}")]
    Insecure {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A value that parses but cannot work.
    #[error("{path}: {key}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Dotted key, e.g. `batch.max_findings` or `destination[2].region`.
        key: String,
        /// What is wrong and what to do.
        message: String,
    },
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The spool directory and what happens to files in it.
    pub spool: SpoolConfig,
    /// The bounded in-memory queue between the spool reader and the sender.
    pub queue: QueueConfig,
    /// How findings are grouped into `BatchImportFindings` requests.
    pub batch: BatchConfig,
    /// Backoff and timeouts for requests to Security Hub.
    pub retry: RetryConfig,
    /// Client-side rate limit in front of every request.
    pub rate: RateConfig,
    /// Where findings go: one `[destination]` table, or several `[[destination]]` entries.
    pub destination: Destinations,
    /// How scanner reports are read.
    pub formats: FormatsConfig,
    /// Stopping.
    pub shutdown: ShutdownConfig,
    /// The status file `securityhub-agent status` reads.
    pub status: StatusConfig,
    /// Resolving findings a new scan no longer reports.
    pub lifecycle: LifecycleConfig,
    /// The Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// Logging.
    pub log: LogConfig,
}

/// What to do with a spool file once all its findings are settled.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnSuccess {
    /// Remove it.
    #[default]
    Delete,
    /// Move it to `done_dir`.
    Move,
}

/// `[spool]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// Directory scanners drop files into (rename them in; dot-files, `*.tmp` and `*.part` are ignored).
    pub dir: PathBuf,
    /// Where undecodable files and rejected findings go. Default: `<dir>/failed`.
    pub failed_dir: Option<PathBuf>,
    /// `delete` (default) or `move` finished files to `done_dir`.
    pub on_success: OnSuccess,
    /// Where finished files go with `on_success = "move"`. Default: `<dir>/done`.
    pub done_dir: Option<PathBuf>,
    /// Full directory scan as a safety net besides inotify.
    #[serde(with = "humantime_serde")]
    pub rescan_interval: Duration,
    /// A file found by a scan (not by an inotify event) is left alone until it has not changed for this long.
    #[serde(with = "humantime_serde")]
    pub settle_time: Duration,
    /// User ids whose files are read. Default: the agent's own user, and root.
    pub allowed_users: Option<Vec<u32>>,
    /// Group ids whose files are read. Default: the agent's own group (`securityhub-agent`).
    pub allowed_groups: Option<Vec<u32>>,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            allowed_users: None,
            allowed_groups: None,
            dir: PathBuf::from("/var/spool/securityhub-agent"),
            failed_dir: None,
            on_success: OnSuccess::Delete,
            done_dir: None,
            rescan_interval: Duration::from_secs(60),
            settle_time: Duration::from_secs(2),
        }
    }
}

impl SpoolConfig {
    /// The dead-letter / quarantine directory.
    pub fn failed_dir(&self) -> PathBuf {
        self.failed_dir.clone().unwrap_or_else(|| self.dir.join("failed"))
    }
    /// Who may submit files: the configured ids, else this process's user (and root) and group.
    pub fn owners(&self) -> crate::spool::open::Owners {
        let own = crate::spool::open::Owners::this_process();
        crate::spool::open::Owners {
            users: self.allowed_users.clone().unwrap_or(own.users),
            groups: self.allowed_groups.clone().unwrap_or(own.groups),
        }
    }
    /// The directory finished files are moved to with `on_success = "move"`.
    pub fn done_dir(&self) -> PathBuf {
        self.done_dir.clone().unwrap_or_else(|| self.dir.join("done"))
    }
}

/// `[queue]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Findings held in memory at most (queued, in flight or being retried).
    pub max_findings: usize,
    /// Bytes of finding JSON held in memory at most. At least 8 MiB (one full request plus one finding).
    pub max_bytes: usize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self { max_findings: 5_000, max_bytes: 16 * 1024 * 1024 }
    }
}

/// `[batch]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Findings per request, 1 to 100.
    pub max_findings: usize,
    /// A partly filled request leaves after this long.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Requests in flight at once (each retries on its own until its findings are settled).
    pub max_in_flight: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self { max_findings: 100, flush_interval: Duration::from_secs(1), max_in_flight: 4 }
    }
}

/// `[retry]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// First backoff after a failed request; doubles each time, with full jitter.
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Backoff never grows beyond this. Transient failures are retried without limit.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Pause after `InvalidAccessException`/`AccessDeniedException` before trying again.
    #[serde(with = "humantime_serde")]
    pub access_denied_pause: Duration,
    /// One request attempt is abandoned (and retried) after this long.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            access_denied_pause: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// `[rate]`: Security Hub allows 10 `BatchImportFindings` requests/s per account and Region,
/// burst 30, shared by every sender in the account.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateConfig {
    /// Ceiling of requests per second.
    pub requests_per_second: f64,
    /// Requests that may go at once after a quiet spell.
    pub burst: u32,
    /// Lower the rate on throttling and raise it slowly on success (AIMD, jittered); off = fixed.
    pub adaptive: bool,
    /// With `adaptive`, the rate never falls below this.
    pub min_requests_per_second: f64,
}

impl Default for RateConfig {
    fn default() -> Self {
        Self { requests_per_second: 10.0, burst: 30, adaptive: true, min_requests_per_second: 0.05 }
    }
}

/// `[destination]` or `[[destination]]`: one Security Hub account and Region.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DestinationConfig {
    /// Named profile (`~/.aws/config`) whose credentials sign this destination's requests.
    /// Default: the SDK's chain (environment, profile, instance role).
    pub profile: Option<String>,
    /// This destination's own request rate (requests/s). Default: `[rate].requests_per_second`.
    pub requests_per_second: Option<f64>,
    /// This destination's own burst. Default: `[rate].burst`.
    pub burst: Option<u32>,
    /// AWS Region. Default: the SDK's chain (`AWS_REGION`, profile, instance metadata).
    pub region: Option<String>,
    /// Endpoint override, e.g. a VPC endpoint or a local stand-in (`http://127.0.0.1:4566`).
    pub endpoint_url: Option<String>,
    /// `ProductArn` for findings that have none. Default:
    /// `arn:aws:securityhub:REGION:ACCOUNT:product/ACCOUNT/default`.
    pub product_arn: Option<String>,
    /// `AwsAccountId` for findings that have none (12 digits).
    pub account_id: Option<String>,
    /// Partner-hosted, sent from the customer account: assume this role in the customer's
    /// account (STS `AssumeRole`); credentials are refreshed before they expire.
    pub role_arn: Option<String>,
    /// The external id the role's trust policy requires. Never logged.
    pub external_id: Option<Redacted>,
    /// Session name for the assumed role. Default: `securityhub-agent`.
    pub session_name: Option<String>,
    /// This instance's id (`i-…`): scanner findings without a resource are about it.
    /// Without it they name the host (`Type = "Other"`, `Id` = host name).
    pub instance_id: Option<String>,
}

/// Every configured destination, in file order. The first is the default: it fills the
/// `AwsAccountId` of findings that have none.
#[derive(Debug, Clone)]
pub struct Destinations(pub Vec<DestinationConfig>);

impl Default for Destinations {
    fn default() -> Self {
        Self(vec![DestinationConfig::default()])
    }
}

impl Destinations {
    /// The first (default) destination.
    pub fn first(&self) -> &DestinationConfig {
        &self.0[0]
    }
}

impl<'de> Deserialize<'de> for Destinations {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OneOrMany;
        impl<'de> serde::de::Visitor<'de> for OneOrMany {
            type Value = Destinations;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a [destination] table or [[destination]] entries")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Destinations, A::Error> {
                let one = DestinationConfig::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(Destinations(vec![one]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Destinations, A::Error> {
                let many =
                    Vec::<DestinationConfig>::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))?;
                if many.is_empty() {
                    return Err(serde::de::Error::custom("at least one [[destination]] is needed"));
                }
                Ok(Destinations(many))
            }
        }
        deserializer.deserialize_any(OneOrMany)
    }
}

/// `[formats]`
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct FormatsConfig {
    /// Report OpenSCAP rules that passed too (as `Compliance.Status = PASSED`, severity INFORMATIONAL).
    pub xccdf_include_passed: bool,
    /// Files whose name matches `pattern` are read as `format` without looking at their content.
    pub force: Vec<ForceFormat>,
}

/// One `[[formats.force]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForceFormat {
    /// File-name pattern: `*` any run of characters, `?` any one character.
    pub pattern: String,
    /// `asff`, `trivy`, `grype`, `sarif` or `xccdf`.
    pub format: crate::decode::Format,
}

impl FormatsConfig {
    /// The forced format for a file name, if a pattern matches (first match wins).
    pub fn forced(&self, name: &str) -> Option<crate::decode::Format> {
        self.force.iter().find(|f| crate::decode::detect::glob_match(&f.pattern, name)).map(|f| f.format)
    }
}

/// What to do with findings the previous report of a scope had and the new one has not.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Resolve {
    /// Leave them (they stay ACTIVE in Security Hub until they age out).
    #[default]
    Off,
    /// Send them again with `RecordState = "ARCHIVED"` (and `Compliance.Status = "PASSED"`).
    Archive,
}

/// `[lifecycle]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LifecycleConfig {
    /// `off` (default) or `archive`. Applies to Trivy, Grype and OpenSCAP reports, each a complete
    /// picture of one target (scanner + target is the scope).
    pub resolve: Resolve,
    /// Where the last accepted report of each scope is kept (one small file per scope).
    pub state_dir: PathBuf,
    /// A scope with no report for this long is listed as stale in `status`; its findings are
    /// left as they are (the scanner may have stopped, the target may be gone).
    #[serde(with = "humantime_serde")]
    pub stale_after: Duration,
    /// ASFF files that are complete reports too: `[[lifecycle.asff]]` entries, first match wins.
    pub asff: Vec<AsffScope>,
}

/// One `[[lifecycle.asff]]` entry: ASFF files whose name matches `pattern` are complete reports
/// of the scope `scope` (e.g. a nightly Prowler export).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AsffScope {
    /// File-name pattern: `*` any run of characters, `?` any one character.
    pub pattern: String,
    /// The scope's name.
    pub scope: String,
}

impl LifecycleConfig {
    /// `resolve = "archive"`.
    pub fn archiving(&self) -> bool {
        self.resolve == Resolve::Archive
    }

    /// The scope an ASFF file of this name is a complete report of, if any.
    pub fn asff_scope(&self, name: &str) -> Option<&str> {
        self.asff
            .iter()
            .find(|a| crate::decode::detect::glob_match(&a.pattern, name))
            .map(|a| a.scope.as_str())
    }
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        Self {
            resolve: Resolve::Off,
            state_dir: PathBuf::from("/var/lib/securityhub-agent/lifecycle"),
            stale_after: Duration::from_secs(7 * 24 * 3600),
            asff: Vec::new(),
        }
    }
}

/// `[status]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatusConfig {
    /// Where the daemon writes its status report (in its state directory).
    pub path: PathBuf,
    /// How often.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

impl Default for StatusConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("/var/lib/securityhub-agent/status.json"),
            interval: Duration::from_secs(5),
        }
    }
}

/// `[metrics]`
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve Prometheus metrics at `http://LISTEN/metrics`; off when absent. Keep it on loopback
    /// unless the network around it is trusted.
    pub listen: Option<std::net::SocketAddr>,
}

/// A value that must not appear in logs or debug output.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Redacted(pub String);

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

/// `[shutdown]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// After SIGTERM/SIGINT, requests in flight and findings already queued get this long to finish.
    #[serde(with = "humantime_serde")]
    pub grace: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self { grace: Duration::from_secs(10) }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event (journald adds the time stamp and unit).
    #[default]
    Text,
    /// One JSON object per event, for log shippers.
    Json,
}

/// `[log]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `error`, `warn`, `info`, `debug` or `trace`; `RUST_LOG` wins when set.
    pub level: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { level: "info".into(), format: LogFormat::Text }
    }
}

/// The keys of every section, for "did you mean" hints.
const KNOWN_KEYS: &[&str] = &[
    "spool",
    "queue",
    "batch",
    "retry",
    "destination",
    "shutdown",
    "log",
    "dir",
    "failed_dir",
    "on_success",
    "done_dir",
    "rescan_interval",
    "settle_time",
    "max_findings",
    "max_bytes",
    "flush_interval",
    "max_in_flight",
    "initial_backoff",
    "max_backoff",
    "access_denied_pause",
    "request_timeout",
    "region",
    "endpoint_url",
    "product_arn",
    "account_id",
    "grace",
    "level",
    "role_arn",
    "external_id",
    "session_name",
    "instance_id",
    "profile",
    "requests_per_second",
    "burst",
    "lifecycle",
    "resolve",
    "state_dir",
    "stale_after",
    "asff",
    "pattern",
    "scope",
];

impl Config {
    /// Reads, parses and validates the file at `path`. A world-writable file is refused.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        use std::os::unix::fs::PermissionsExt;
        let read = |source| ConfigError::Read { path: path.to_owned(), source };
        let mode = std::fs::metadata(path).map_err(read)?.permissions().mode() & 0o7777;
        if mode & 0o002 != 0 {
            return Err(ConfigError::Insecure { path: path.to_owned(), mode });
        }
        let text = std::fs::read_to_string(path).map_err(read)?;
        Self::parse(&text, path)
    }

    /// A warning when the file is writable by its group (the agent's own group may be scanners).
    pub fn permission_warning(path: &Path) -> Option<String> {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o7777;
        (mode & 0o020 != 0)
            .then(|| format!("{}: writable by its group (mode {mode:o}); consider chmod g-w", path.display()))
    }

    /// Whether going from `self` to `new` needs the pipeline restarted: anything but the log
    /// level and the request rates (which apply live).
    pub fn restart_needed(&self, new: &Config) -> bool {
        let shape = |c: &Config| {
            let mut c = c.clone();
            c.log = LogConfig::default();
            c.rate = RateConfig::default();
            let mut secrets = Vec::new();
            for d in &mut c.destination.0 {
                d.requests_per_second = None;
                d.burst = None;
                secrets.push(d.external_id.take().map(|r| r.0));
            }
            // `Debug` hides the external id: compare it apart.
            (format!("{c:?}"), secrets)
        };
        shape(self) != shape(new)
    }

    /// Parses and validates `text`; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map(|s| line_column(text, s.start)).unwrap_or((1, 1));
            ConfigError::Parse { path: path.to_owned(), line, column, message: with_hint(e.message()) }
        })?;
        config.validate(path)?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| {
            Err(ConfigError::Invalid { path: path.to_owned(), key: key.to_owned(), message })
        };
        if !(1..=API_MAX_FINDINGS_PER_REQUEST).contains(&self.batch.max_findings) {
            return invalid(
                "batch.max_findings",
                format!(
                    "{} is outside 1..=100 (Security Hub takes at most 100 findings a request)",
                    self.batch.max_findings
                ),
            );
        }
        if self.batch.max_in_flight == 0 {
            return invalid("batch.max_in_flight", "must be at least 1".into());
        }
        if self.queue.max_findings < self.batch.max_findings {
            return invalid(
                "queue.max_findings",
                format!(
                    "{} is smaller than batch.max_findings ({}); the queue must hold one full request",
                    self.queue.max_findings, self.batch.max_findings
                ),
            );
        }
        if self.queue.max_bytes < 8 * 1024 * 1024 {
            return invalid(
                "queue.max_bytes",
                format!(
                    "{} bytes is below the minimum of 8388608 (8 MiB: one 6 MB request plus room to fill the next)",
                    self.queue.max_bytes
                ),
            );
        }
        if self.retry.initial_backoff.is_zero() || self.retry.max_backoff < self.retry.initial_backoff {
            return invalid(
                "retry.max_backoff",
                "must be at least retry.initial_backoff, which must be above zero".into(),
            );
        }
        let rate = &self.rate;
        if !(rate.requests_per_second > 0.0 && rate.requests_per_second.is_finite()) || rate.burst == 0 {
            return invalid("rate.requests_per_second", "must be above zero, with burst at least 1".into());
        }
        if !(rate.min_requests_per_second > 0.0 && rate.min_requests_per_second <= rate.requests_per_second) {
            return invalid(
                "rate.min_requests_per_second",
                format!(
                    "{} must be above zero and at most rate.requests_per_second ({})",
                    rate.min_requests_per_second, rate.requests_per_second
                ),
            );
        }
        let many = self.destination.0.len() > 1;
        let mut seen = std::collections::HashSet::new();
        for (n, d) in self.destination.0.iter().enumerate() {
            let invalid = |key: &str, message: String| {
                let key =
                    if many { format!("destination[{}].{key}", n + 1) } else { format!("destination.{key}") };
                Err(ConfigError::Invalid { path: path.to_owned(), key, message })
            };
            if many && (d.account_id.is_none() || d.region.is_none()) {
                return invalid(
                    if d.account_id.is_none() { "account_id" } else { "region" },
                    "is required when several [[destination]] entries are configured: \
                     findings are routed by account and Region"
                        .into(),
                );
            }
            if many && !seen.insert((d.account_id.clone(), d.region.clone())) {
                return invalid(
                    "account_id",
                    format!(
                        "{:?} in {:?} is configured twice",
                        d.account_id.as_deref().unwrap_or_default(),
                        d.region.as_deref().unwrap_or_default()
                    ),
                );
            }
            if let Some(id) = &d.account_id {
                if !crate::finding::is_account_id(id) {
                    return invalid("account_id", format!("{id:?} is not a 12-digit AWS account id"));
                }
            }
            if let Some(arn) = &d.product_arn {
                if !arn.starts_with("arn:") || !arn.contains(":product/") {
                    return invalid(
                        "product_arn",
                        format!(
                            "{arn:?} is not a product ARN (arn:aws:securityhub:REGION:ACCOUNT:product/COMPANY/PRODUCT)"
                        ),
                    );
                }
            }
            if let Some(arn) = &d.role_arn {
                if !(arn.starts_with("arn:") && arn.contains(":role/")) {
                    return invalid(
                        "role_arn",
                        format!("{arn:?} is not a role ARN (arn:aws:iam::ACCOUNT:role/NAME)"),
                    );
                }
            }
            if d.external_id.is_some() && d.role_arn.is_none() {
                return invalid("external_id", "is only used with role_arn".into());
            }
            if let Some(url) = &d.endpoint_url {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return invalid("endpoint_url", format!("{url:?} must start with http:// or https://"));
                }
            }
            if d.requests_per_second.is_some_and(|r| !(r > 0.0 && r.is_finite())) || d.burst == Some(0) {
                return invalid("requests_per_second", "must be above zero, with burst at least 1".into());
            }
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return invalid(
                "log.level",
                format!("{:?} is not a level (error, warn, info, debug, trace)", self.log.level),
            );
        }
        Ok(())
    }
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(before.len(), |nl| before.len() - nl - 1) + 1;
    (line, column)
}

/// Adds "did you mean" to serde's unknown-field message.
fn with_hint(message: &str) -> String {
    let message = message.trim_end().to_owned();
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return message;
    };
    let Some(field) = rest.split('`').next() else {
        return message;
    };
    match KNOWN_KEYS.iter().min_by_key(|k| edit_distance(field, k)) {
        Some(best) if edit_distance(field, best) <= 2 => {
            format!("{message} (did you mean \"{best}\"?)")
        }
        _ => message,
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("config.toml"))
    }

    #[test]
    fn empty_file_gives_documented_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.spool.dir, PathBuf::from("/var/spool/securityhub-agent"));
        assert_eq!(c.spool.failed_dir(), PathBuf::from("/var/spool/securityhub-agent/failed"));
        assert_eq!(c.batch.max_findings, 100);
        assert_eq!(c.batch.flush_interval, Duration::from_secs(1));
        assert_eq!(c.retry.max_backoff, Duration::from_secs(30));
        assert_eq!(c.spool.on_success, OnSuccess::Delete);
    }

    #[test]
    fn unknown_key_names_line_column_and_suggestion() {
        let err = parse("[destination]\nregoin = \"eu-west-1\"\n").unwrap_err().to_string();
        assert!(err.starts_with("config.toml:2:1: unknown field `regoin`"), "{err}");
        assert!(err.contains("did you mean \"region\""), "{err}");
    }

    #[test]
    fn durations_are_humantime_strings() {
        let c = parse("[batch]\nflush_interval = \"250ms\"\n[spool]\nrescan_interval = \"5m\"").unwrap();
        assert_eq!(c.batch.flush_interval, Duration::from_millis(250));
        assert_eq!(c.spool.rescan_interval, Duration::from_secs(300));
        let err = parse("[batch]\nflush_interval = \"soon\"").unwrap_err().to_string();
        assert!(err.starts_with("config.toml:2:18:"), "{err}");
    }

    #[test]
    fn batch_over_api_limit_is_refused_with_key() {
        let err = parse("[batch]\nmax_findings = 101").unwrap_err().to_string();
        assert!(err.contains("batch.max_findings: 101 is outside 1..=100"), "{err}");
    }

    #[test]
    fn account_id_must_have_12_digits() {
        let err = parse("[destination]\naccount_id = \"1234\"").unwrap_err().to_string();
        assert!(err.contains("destination.account_id"), "{err}");
        assert!(parse("[destination]\naccount_id = \"111122223333\"").is_ok());
    }

    #[test]
    fn rate_must_be_positive() {
        let err = parse("[rate]\nrequests_per_second = 0.0").unwrap_err().to_string();
        assert!(err.contains("rate.requests_per_second"), "{err}");
        let err = parse("[rate]\nmin_requests_per_second = 20.0").unwrap_err().to_string();
        assert!(err.contains("rate.min_requests_per_second"), "{err}");
    }

    #[test]
    fn forced_formats_match_by_file_name() {
        let c = parse("[[formats.force]]\npattern = \"*.sarif\"\nformat = \"sarif\"\n").unwrap();
        assert_eq!(c.formats.forced("x.sarif"), Some(crate::decode::Format::Sarif));
        assert_eq!(c.formats.forced("x.json"), None);
        let err = parse("[[formats.force]]\npattern = \"*\"\nformat = \"nessus\"\n").unwrap_err().to_string();
        assert!(err.contains("config.toml:3:10: unknown variant `nessus`"), "{err}");
    }

    #[test]
    fn small_byte_budget_is_refused() {
        let err = parse("[queue]\nmax_bytes = 1000").unwrap_err().to_string();
        assert!(err.contains("queue.max_bytes"), "{err}");
    }

    #[test]
    fn world_writable_config_is_refused_group_writable_warned() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(err.contains("writable by every user (mode 666)") && err.contains("chmod o-w"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o664)).unwrap();
        assert!(Config::load(&path).is_ok());
        assert!(Config::permission_warning(&path).unwrap().contains("mode 664"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(Config::permission_warning(&path).is_none());
    }

    #[test]
    fn external_id_never_shows_in_debug_output() {
        let c =
            parse("[destination]\nrole_arn = \"arn:aws:iam::111122223333:role/p\"\nexternal_id = \"s3cr3t\"")
                .unwrap();
        assert!(!format!("{c:?}").contains("s3cr3t"));
        let err = parse("[destination]\nexternal_id = \"x\"").unwrap_err().to_string();
        assert!(err.contains("destination.external_id: is only used with role_arn"), "{err}");
    }

    #[test]
    fn destinations_are_one_table_or_several_entries() {
        let one = parse("[destination]\nregion = \"eu-west-1\"").unwrap();
        assert_eq!(one.destination.0.len(), 1);
        assert_eq!(one.destination.first().region.as_deref(), Some("eu-west-1"));
        assert_eq!(parse("").unwrap().destination.0.len(), 1, "no section: one destination from the chains");
        let two = parse(
            "[[destination]]\naccount_id = \"111122223333\"\nregion = \"eu-west-1\"\n\
             [[destination]]\naccount_id = \"444455556666\"\nregion = \"us-east-1\"\nrequests_per_second = 2.5\n",
        )
        .unwrap();
        assert_eq!(two.destination.0.len(), 2);
        assert_eq!(two.destination.0[1].requests_per_second, Some(2.5));
    }

    #[test]
    fn several_destinations_need_account_and_region_each_once() {
        let err = parse(
            "[[destination]]\naccount_id = \"111122223333\"\nregion = \"eu-west-1\"\n\
             [[destination]]\nregion = \"us-east-1\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("destination[2].account_id: is required when several"), "{err}");
        let err = parse(
            "[[destination]]\naccount_id = \"111122223333\"\nregion = \"eu-west-1\"\n\
             [[destination]]\naccount_id = \"111122223333\"\nregion = \"eu-west-1\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("destination[2].account_id") && err.contains("configured twice"), "{err}");
        let err = parse("[[destination]]\nregoin = \"x\"\n").unwrap_err().to_string();
        assert!(err.contains(":2:1:") && err.contains("did you mean \"region\""), "{err}");
    }

    #[test]
    fn only_log_level_and_rates_apply_without_a_restart() {
        let base = parse("[destination]\nregion = \"eu-west-1\"\nrole_arn = \"arn:aws:iam::111122223333:role/r\"\nexternal_id = \"a\"").unwrap();
        let live = parse("[log]\nlevel = \"debug\"\n[rate]\nrequests_per_second = 3.0\n[destination]\nregion = \"eu-west-1\"\nrole_arn = \"arn:aws:iam::111122223333:role/r\"\nexternal_id = \"a\"\nburst = 5").unwrap();
        assert!(!base.restart_needed(&live));
        let batch = parse("[batch]\nmax_findings = 50\n[destination]\nregion = \"eu-west-1\"\nrole_arn = \"arn:aws:iam::111122223333:role/r\"\nexternal_id = \"a\"").unwrap();
        assert!(base.restart_needed(&batch));
        let secret = parse("[destination]\nregion = \"eu-west-1\"\nrole_arn = \"arn:aws:iam::111122223333:role/r\"\nexternal_id = \"b\"").unwrap();
        assert!(base.restart_needed(&secret), "a new external id needs new credentials");
    }

    #[test]
    fn example_config_parses() {
        let text = include_str!("../config.example.toml");
        parse(text).unwrap();
    }
}
