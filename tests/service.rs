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
