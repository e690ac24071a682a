//! Test harness: a hubsim on loopback, a spool in a temp dir, and the real `securityhub-agent`
//! binary run against them with test credentials (signed with SigV4, checked by hubsim).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use hubsim::{Credentials, Hub, Options};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

pub const ACCESS_KEY: &str = "AKIDHUBSIMTEST";
pub const SECRET_KEY: &str = "hubsim/test/secret+key";
pub const ACCOUNT: &str = "111122223333";

pub struct Env {
    pub dir: tempfile::TempDir,
    pub spool: PathBuf,
    pub hub: Hub,
}

impl Env {
    /// A spool and a hubsim that verifies signatures with the test credentials.
    pub async fn new() -> Env {
        Self::with_options(Options::default()).await
    }

    pub async fn with_options(mut options: Options) -> Env {
        options
            .credentials
            .push(Credentials { access_key: ACCESS_KEY.into(), secret_key: SECRET_KEY.into() });
        let hub = Hub::start(options).await.expect("hubsim starts");
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        std::fs::create_dir(&spool).unwrap();
        Env { dir, spool, hub }
    }

    pub fn failed(&self) -> PathBuf {
        self.spool.join("failed")
    }

    /// Writes config.toml with fast test timings, with `extra` TOML merged over it.
    pub fn config(&self, extra: &str) -> PathBuf {
        let base = format!(
            r#"
[spool]
dir = "{spool}"
rescan_interval = "1s"
settle_time = "0s"
[batch]
flush_interval = "50ms"
[retry]
initial_backoff = "10ms"
max_backoff = "200ms"
access_denied_pause = "200ms"
request_timeout = "2s"
[destination]
region = "eu-west-1"
endpoint_url = "{endpoint}"
account_id = "{ACCOUNT}"
[shutdown]
grace = "1s"
[rate]
requests_per_second = 1000.0
burst = 1000
[status]
path = "{status}"
interval = "200ms"
"#,
            spool = self.spool.display(),
            status = self.dir.path().join("status.json").display(),
            endpoint = self.hub.endpoint(),
        );
        let mut table: toml::Table = base.parse().unwrap();
        let extra: toml::Table = extra.parse().expect("extra config is TOML");
        for (section, values) in extra {
            match (table.get_mut(&section), values) {
                (Some(toml::Value::Table(t)), toml::Value::Table(v)) => t.extend(v),
                (_, v) => {
                    table.insert(section, v);
                }
            }
        }
        let path = self.dir.path().join("config.toml");
        std::fs::write(&path, toml::to_string(&table).unwrap()).unwrap();
        path
    }

    /// A `[[destination]]` entry for `account` in `region`, sent to `endpoint`.
    pub fn destination(account: &str, region: &str, endpoint: &str) -> String {
        format!(
            "[[destination]]\naccount_id = \"{account}\"\nregion = \"{region}\"\nendpoint_url = \"{endpoint}\"\n"
        )
    }

    /// The agent binary with test credentials and no instance metadata lookups.
    pub fn agent(&self, args: &[&str]) -> Command {
        agent_command(args, SECRET_KEY)
    }

    /// Runs `run --once` to completion; returns (success, stderr).
    pub async fn run_once(&self, config: &Path) -> (bool, String) {
        let out = self
            .agent(&["run", "--once", "--config", config.to_str().unwrap()])
            .output()
            .await
            .expect("the agent runs");
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    }

    /// Starts the daemon.
    pub fn spawn(&self, config: &Path) -> Child {
        self.agent(&["run", "--config", config.to_str().unwrap()])
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("the agent starts")
    }

    /// Drops a file into the spool the way producers should: write aside, rename in.
    pub fn drop_file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let tmp = self.spool.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, bytes).unwrap();
        let path = self.spool.join(name);
        std::fs::rename(&tmp, &path).unwrap();
        path
    }

    /// Regular files left in the spool (not the agent's subdirectories).
    pub fn spool_files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.spool)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| !e.file_type().unwrap().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// The parsed `failed/NAME.error.json`.
    pub fn report(&self, name: &str) -> Value {
        let path = self.failed().join(format!("{name}.error.json"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_slice(&bytes).unwrap()
    }

    /// Waits until the spool holds no files, or panics after `timeout`.
    pub async fn wait_spool_empty(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.spool_files().is_empty() {
            assert!(tokio::time::Instant::now() < deadline, "spool not drained: {:?}", self.spool_files());
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// The agent binary with a clean environment: no AWS profile files, debug logs; credentials
/// and instance metadata are for the caller to set.
pub fn bare_agent(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_securityhub-agent"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .env("RUST_LOG", "securityhub_agent=debug");
    cmd
}

/// The agent with test credentials and no instance metadata lookups.
pub fn agent_command(args: &[&str], secret: &str) -> Command {
    let mut cmd = bare_agent(args);
    cmd.env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_EC2_METADATA_DISABLED", "true");
    cmd
}

/// A valid finding without AwsAccountId/ProductArn (the agent fills them in).
pub fn finding(id: &str) -> Value {
    json!({
        "SchemaVersion": "2018-10-08",
        "Id": id,
        "GeneratorId": "test-scanner",
        "Types": ["Software and Configuration Checks/Vulnerabilities/CVE"],
        "CreatedAt": "2024-01-01T00:00:00Z",
        "UpdatedAt": "2024-01-01T00:00:00Z",
        "Severity": {"Label": "HIGH"},
        "Title": format!("Finding {id}"),
        "Description": "A test finding.",
        "Resources": [{"Type": "Other", "Id": "host-1"}],
    })
}

/// `n` findings with Ids `PREFIX-0 .. PREFIX-(n-1)`.
pub fn findings(prefix: &str, n: usize) -> Vec<Value> {
    (0..n).map(|i| finding(&format!("{prefix}-{i}"))).collect()
}

/// NDJSON text of `items`.
pub fn ndjson(items: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in items {
        out.extend_from_slice(v.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

/// Peak resident set size of a process, in KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}
