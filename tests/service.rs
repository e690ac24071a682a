//! The systemd side: the notify protocol spoken to a real `NOTIFY_SOCKET`, and the unit file
//! checked by `systemd-analyze` (verify, and the offline security score).

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

fn read_until(socket: &UnixDatagram, want: &str, timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            let done = msg.lines().any(|l| l == want);
            seen.push(msg);
            if done {
                return seen;
            }
        }
    }
    panic!("no {want} within {timeout:?}; got {seen:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn notifies_ready_pings_the_watchdog_and_says_stopping() {
    let env = Env::new().await;
    let socket_path = env.dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let mut child = env
        .agent(&["run", "--config", env.config("").to_str().unwrap()])
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "2000000")
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let seen = tokio::task::block_in_place(|| read_until(&socket, "READY=1", Duration::from_secs(20)));
    assert!(seen.last().unwrap().contains("STATUS=watching the spool"), "{seen:?}");
    let seen = tokio::task::block_in_place(|| read_until(&socket, "WATCHDOG=1", Duration::from_secs(10)));
    assert!(seen.iter().any(|m| m.contains("STATUS=files finished 0")), "{seen:?}");
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    tokio::task::block_in_place(|| read_until(&socket, "STOPPING=1", Duration::from_secs(10)));
    assert!(child.wait().await.unwrap().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_notify_socket_nobody_reads_never_blocks_delivery_or_shutdown() {
    let env = Env::new().await;
    let socket_path = env.dir.path().join("deaf.sock");
    let _deaf = UnixDatagram::bind(&socket_path).unwrap(); // bound, never read: its queue fills
    let mut child = env
        .agent(&["run", "--config", env.config("").to_str().unwrap()])
        .env("NOTIFY_SOCKET", &socket_path)
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pid = child.id().unwrap().to_string();
    // Each reload says RELOADING=1 and READY=1: more than the socket's queue holds (10).
    for _ in 0..8 {
        std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    env.drop_file("after.json", serde_json::json!(findings("deaf", 3)).to_string().as_bytes());
    assert_eq!(env.hub.wait_for(3, Duration::from_secs(20)).await, 3, "delivery goes on");
    std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait()).await.expect("stops on SIGTERM");
    assert!(status.unwrap().success());
}

fn unit_with_binary(dir: &Path) -> std::path::PathBuf {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/securityhub-agent.service"),
    )
    .unwrap();
    let path = dir.join("securityhub-agent.service");
    std::fs::write(
        &path,
        unit.replace("/usr/bin/securityhub-agent", env!("CARGO_BIN_EXE_securityhub-agent")),
    )
    .unwrap();
    path
}

#[test]
fn unit_file_verifies_and_scores_at_most_2_0() {
    if std::process::Command::new("systemd-analyze").arg("--version").output().is_err() {
        eprintln!("SKIPPED: systemd-analyze is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_with_binary(dir.path());
    let verify = std::process::Command::new("systemd-analyze").arg("verify").arg(&unit).output().unwrap();
    let complaints = String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success() && complaints.trim().is_empty(), "{complaints}");
    let security = std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=20", "--no-pager"])
        .arg(&unit)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&security.stdout);
    assert!(security.status.success(), "{out}");
    let score: f64 = out
        .lines()
        .find_map(|l| l.split("Overall exposure level for securityhub-agent.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("an exposure score");
    eprintln!("systemd-analyze security exposure: {score}");
    assert!(score <= 2.0, "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn status_shows_a_stalled_security_hub_within_seconds() {
    let env = Env::new().await;
    let config = env.config("");
    let mut child = env.spawn(&config);
    env.drop_file("first.json", serde_json::json!(findings("s", 3)).to_string().as_bytes());
    assert_eq!(env.hub.wait_for(3, Duration::from_secs(20)).await, 3);
    let status = |args: &'static [&'static str]| {
        let mut a = vec!["status", "--config", config.to_str().unwrap()];
        a.extend_from_slice(args);
        env.agent(&a).output()
    };
    // Healthy: delivered, no error.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let out = status(&[]).await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("running (pid") && text.contains("3 accepted") && text.contains("last error:     none"),
        "{text}"
    );

    // Security Hub stalls: requests time out (2 s in the test config); status says so.
    env.hub.set_stalled(true);
    env.drop_file("second.json", serde_json::json!(findings("t", 2)).to_string().as_bytes());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = status(&["--json"]).await.unwrap();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let error = report["counters"]["last_error"][1].as_str().unwrap_or_default().to_owned();
        if error.contains("timeout") || error.contains("timed out") {
            assert_eq!(report["backlog_files"], 1, "{report}");
            break;
        }
        assert!(Instant::now() < deadline, "no error in status: {report}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    child.kill().await.unwrap();
    child.wait().await.unwrap();
    // Stale after three intervals, counted in whole seconds (at least 1 s each).
    tokio::time::sleep(Duration::from_millis(4100)).await;
    let out = status(&[]).await.unwrap();
    assert!(!out.status.success(), "a stopped daemon's report goes stale");
    assert!(String::from_utf8_lossy(&out.stdout).contains("NOT RUNNING or stuck"));
}

/// `GET /metrics` over a raw socket; returns name → value for every sample line.
async fn scrape(addr: &str) -> std::collections::BTreeMap<String, f64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET /metrics HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplit_once(' ').map(|(k, v)| (k.to_owned(), v.parse().unwrap_or(f64::NAN))))
        .collect()
}

fn sum_prefix(m: &std::collections::BTreeMap<String, f64>, prefix: &str) -> f64 {
    m.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(_, v)| v).sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_add_up_during_delivery_and_show_a_stall() {
    let slow = hubsim::Faults {
        request_rate: 1.0,
        request_kinds: vec![hubsim::RequestFault::Delay(Duration::from_millis(30))],
        finding_invalid_rate: 0.1,
        ..hubsim::Faults::default()
    };
    let env = Env::with_options(hubsim::Options { faults: slow, ..hubsim::Options::default() }).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let mut bad = finding("no-title");
    bad.as_object_mut().unwrap().remove("Title");
    let mut items = findings("m", 2000);
    items.push(bad);
    env.drop_file("many.json", serde_json::json!(items).to_string().as_bytes());
    let mut child =
        env.spawn(&env.config(&format!("[metrics]\nlisten = \"{addr}\"\n[batch]\nmax_in_flight = 1")));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut saw_in_flight = false;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(&addr)).await
        else {
            continue;
        };
        let m = scrape(&addr).await;
        let decoded = m["securityhub_agent_findings_decoded_total"];
        let accepted = m["securityhub_agent_findings_accepted_total"];
        let dead = sum_prefix(&m, "securityhub_agent_findings_dead_lettered_total");
        let queued = m["securityhub_agent_queue_findings"];
        assert!(decoded >= accepted + dead, "{m:?}");
        saw_in_flight |= queued > 0.0 && accepted > 0.0;
        if m["securityhub_agent_files_finished_total"] == 1.0 {
            assert_eq!(decoded, accepted + dead, "every decoded finding is accepted or dead-lettered: {m:?}");
            assert_eq!((decoded, queued), (2001.0, 0.0), "{m:?}");
            assert!(
                dead >= 1.0
                    && m.contains_key(
                        "securityhub_agent_findings_dead_lettered_total{code=\"MissingField\"}"
                    ),
                "{m:?}"
            );
            assert!(m["securityhub_agent_last_delivery_timestamp_seconds"] > 1.7e9);
            let lane = format!(
                "securityhub_agent_send_rate_requests_per_second{{destination=\"{ACCOUNT}/eu-west-1\"}}"
            );
            assert_eq!(m.get(&lane), Some(&1000.0), "{m:?}");
            let count = m["securityhub_agent_request_duration_seconds_count"];
            assert_eq!(count, m["securityhub_agent_requests_total"], "every request timed: {m:?}");
            assert_eq!(m["securityhub_agent_request_duration_seconds_bucket{le=\"+Inf\"}"], count);
            assert_eq!(
                m["securityhub_agent_request_duration_seconds_bucket{le=\"0.01\"}"], 0.0,
                "hubsim delays 30 ms"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{m:?}");
    }
    assert!(saw_in_flight, "a scrape during delivery saw findings in memory");
    // A stalled Security Hub shows up as failed requests within seconds (2 s request timeout).
    env.hub.set_stalled(true);
    env.drop_file("more.json", serde_json::json!(findings("n", 5)).to_string().as_bytes());
    let deadline = Instant::now() + Duration::from_secs(15);
    while scrape(&addr).await["securityhub_agent_requests_failed_total"] < 1.0 {
        assert!(Instant::now() < deadline, "no failed request in the metrics");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(scrape(&addr).await["securityhub_agent_spool_backlog_files"], 1.0);
    child.kill().await.unwrap();
}

/// Collects the child's stderr lines as they come.
fn collect_lines(stderr: tokio::process::ChildStderr) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    use tokio::io::AsyncBufReadExt;
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = lines.clone();
    tokio::spawn(async move {
        let mut reader = tokio::io::BufReader::new(stderr).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

async fn wait_for_line(lines: &std::sync::Arc<std::sync::Mutex<Vec<String>>>, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(l) = lines.lock().unwrap().iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        assert!(Instant::now() < deadline, "no line with {needle:?} in {:?}", lines.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The daemon with its log collected, once it has started: (child, log lines, pid).
async fn spawn_logged(
    env: &Env,
    config: &Path,
) -> (tokio::process::Child, std::sync::Arc<std::sync::Mutex<Vec<String>>>, String) {
    let mut child = env
        .agent(&["run", "--config", config.to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let lines = collect_lines(child.stderr.take().unwrap());
    wait_for_line(&lines, "starting").await;
    let pid = child.id().unwrap().to_string();
    (child, lines, pid)
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_applies_a_new_rate_and_keeps_out_a_broken_config() {
    let env = Env::new().await;
    let config = env.config("");
    let good = std::fs::read_to_string(&config).unwrap();
    let (mut child, lines, pid) = spawn_logged(&env, &config).await;
    let signal = |sig: &str| std::process::Command::new("kill").args([sig, &pid]).status().unwrap();

    std::fs::write(&config, "[rate]\nrequests_per_second = \"fast\"\n").unwrap();
    signal("-HUP");
    let line = wait_for_line(&lines, "keeping the running one").await;
    assert!(line.contains("config.toml:2:"), "names file and line: {line}");

    std::fs::write(&config, good.replace("requests_per_second = 1000.0", "requests_per_second = 3.0"))
        .unwrap();
    signal("-HUP");
    let line = wait_for_line(&lines, "rate settings reloaded").await;
    assert!(line.contains("requests_per_second=3"), "{line}");

    env.drop_file("after.json", serde_json::json!(findings("h", 3)).to_string().as_bytes());
    assert_eq!(env.hub.wait_for(3, Duration::from_secs(15)).await, 3, "still delivering");
    signal("-USR1");
    let line = wait_for_line(&lines, "findings accepted 3").await;
    assert!(line.contains("status"), "{line}");
    assert!(child.try_wait().unwrap().is_none(), "SIGHUP and SIGUSR1 do not stop the agent");
    signal("-TERM");
    assert!(child.wait().await.unwrap().success());
}

#[test]
fn package_maintainer_scripts_are_valid_shell() {
    for script in ["postinst", "postrm"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/deb").join(script);
        let out = std::process::Command::new("sh").arg("-n").arg(&path).output().unwrap();
        assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("#DEBHELPER#"), "{script} must leave room for the systemd snippets");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_with_a_new_destination_restarts_the_pipeline_in_place() {
    let env = Env::new().await;
    let other = Env::new().await.hub;
    let config = env.config("");
    let (mut child, lines, pid) = spawn_logged(&env, &config).await;
    env.drop_file("first.json", serde_json::json!(findings("first", 2)).to_string().as_bytes());
    assert_eq!(env.hub.wait_for(2, Duration::from_secs(15)).await, 2);

    // Same process, another destination and batch size: the pipeline restarts in place.
    let rewritten = env.config(&format!(
        "[destination]\nendpoint_url = \"{}\"\n[batch]\nmax_findings = 50\n",
        other.endpoint()
    ));
    assert_eq!(rewritten, config, "the same file, rewritten");
    std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    wait_for_line(&lines, "restarting the pipeline in place").await;
    wait_for_line(&lines, "starting it with the new configuration").await;
    env.drop_file("second.json", serde_json::json!(findings("second", 120)).to_string().as_bytes());
    assert_eq!(other.wait_for(120, Duration::from_secs(15)).await, 120, "the new destination receives");
    assert_eq!(other.stats().largest_request, 50, "the new batch size applies");
    assert!(env.hub.finding("second-0").is_none(), "nothing goes to the old destination");
    assert!(child.try_wait().unwrap().is_none(), "the same process keeps running");
    std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(child.wait().await.unwrap().success());
}
