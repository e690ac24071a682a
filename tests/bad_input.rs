//! The bad-input corpus (`tests/data/bad-input/`, plus cases made here that cannot be
//! committed) dropped into the spool of a running daemon together with good files: each bad
//! file is refused with a clear reason, the good ones are delivered meanwhile, the daemon keeps
//! running and its memory stays bounded.

mod common;

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use common::{Env, finding, findings, ndjson};
use serde_json::json;

fn corpus(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/bad-input").join(name)).unwrap()
}

/// The quarantine reason of a file in `failed/`.
fn reason(env: &Env, name: &str) -> String {
    env.report(name)["reason"].as_str().unwrap_or_else(|| panic!("{name}: no reason")).to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_bad_input_is_refused_with_a_reason_while_good_files_are_delivered() {
    let env = Env::new().await;
    let config = env.config("[spool]\nsettle_time = \"2s\"\n");
    let mut daemon = env.spawn(&config);
    let pid = daemon.id().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // A file still being written when first seen: written in place, in pieces, over 3 s.
    let slow_path = env.spool.join("slow.ndjson");
    let slow_body = ndjson(&findings("slow", 50));
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let mut f = tokio::fs::File::create(&slow_path).await.unwrap();
        for chunk in slow_body.chunks(slow_body.len() / 6 + 1) {
            f.write_all(chunk).await.unwrap();
            f.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });

    for name in [
        "truncated.json",
        "invalid-utf8.json",
        "binary.bin",
        "deep-nesting.json",
        "object-bomb.json",
        "empty.json",
        "not-asff.json",
        "scalar.json",
        "nul-bytes.json",
    ] {
        env.drop_file(name, &corpus(name));
        env.drop_file(
            &format!("good-after-{name}"),
            json!(finding(&format!("good-{name}"))).to_string().as_bytes(),
        );
    }
    // 2 GB of zeros (sparse: no disk used), a single 10 MB finding.
    let huge = env.spool.join(".huge.bin");
    std::fs::File::create(&huge).unwrap().set_len(2 << 30).unwrap();
    std::fs::rename(&huge, env.spool.join("huge.bin")).unwrap();
    let mut big = finding("ten-mb");
    big["ProductFields"] = json!({ "blob": "x".repeat(10 << 20) });
    env.drop_file("ten-mb.json", json!([big, finding("beside-ten-mb")]).to_string().as_bytes());
    // Not regular files, and a stranger's.
    std::os::unix::fs::symlink("/etc/shadow", env.spool.join("shadow.json")).unwrap();
    assert!(
        std::process::Command::new("mkfifo").arg(env.spool.join("pipe.json")).status().unwrap().success()
    );
    let stranger = env.drop_file("stranger.json", json!(finding("stranger")).to_string().as_bytes());
    let chowned =
        std::process::Command::new("chown").arg("4242:4242").arg(&stranger).status().unwrap().success();
    // Odd names are still names: delivered.
    env.drop_file("line\nbreak.json", json!(finding("newline-name")).to_string().as_bytes());
    let odd = std::ffi::OsStr::from_bytes(b"caf\xff\xfe.json");
    std::fs::write(env.spool.join(".odd.tmp"), json!(finding("non-utf8-name")).to_string()).unwrap();
    std::fs::rename(env.spool.join(".odd.tmp"), env.spool.join(odd)).unwrap();
    // A file deleted while it is read: 20k findings, removed once the first arrive.
    let doomed = env.drop_file("doomed.ndjson", &ndjson(&findings("doomed", 20_000)));
    tokio::time::timeout(Duration::from_secs(60), async {
        while env.hub.finding("doomed-0").is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the doomed file is being read");
    let _ = std::fs::remove_file(&doomed);
    writer.await.unwrap();
    env.drop_file("last.json", json!(finding("last")).to_string().as_bytes());

    // Everything settles; nothing is left in the spool but what was refused.
    env.wait_spool_empty(Duration::from_secs(120)).await;
    assert!(daemon.try_wait().unwrap().is_none(), "the daemon is still running");
    let wanted = ["slow-49", "beside-ten-mb", "newline-name", "non-utf8-name", "last"];
    for id in wanted {
        assert!(env.hub.finding(id).is_some(), "{id} delivered");
    }
    assert_eq!(
        env.hub.findings().iter().filter(|f| f["Id"].as_str().unwrap().starts_with("slow-")).count(),
        50,
        "the slowly written file is read once complete"
    );
    for name in ["truncated.json", "invalid-utf8.json"] {
        assert!(env.hub.finding(&format!("good-{name}")).is_some());
    }
    let all_good =
        env.hub.findings().iter().filter(|f| f["Id"].as_str().unwrap().starts_with("good-")).count();
    assert_eq!(all_good, 9, "every good file beside a bad one is delivered");

    let cases: [(&str, &str); 10] = [
        ("truncated.json", "truncated"),
        ("invalid-utf8.json", "invalid unicode"),
        ("binary.bin", "not a format the agent reads"),
        ("object-bomb.json", "not a format the agent reads"),
        ("empty.json", "the file is empty"),
        ("not-asff.json", "not a format the agent reads"),
        ("scalar.json", "not a format the agent reads"),
        ("nul-bytes.json", "not a format the agent reads"),
        ("huge.bin", "not a format the agent reads"),
        ("shadow.json", "symbolic link"),
    ];
    for (name, why) in cases {
        let r = reason(&env, name);
        assert!(r.contains(why), "{name}: {r}");
    }
    assert!(reason(&env, "pipe.json").contains("not a regular file"), "{}", reason(&env, "pipe.json"));
    if chowned {
        assert!(reason(&env, "stranger.json").contains("owned by uid 4242"));
        assert!(env.hub.finding("stranger").is_none());
    }
    // Findings refused one by one: the nested arrays are not an object, the 10 MB one too big.
    let nested = env.report("deep-nesting.json");
    assert_eq!(nested["rejected"][0]["ErrorCode"], "NotAnObject", "{nested:#}");
    let ten = env.report("ten-mb.json");
    assert_eq!(ten["rejected"][0]["ErrorCode"], "FindingTooLarge", "{ten:#}");
    assert!(env.hub.finding("ten-mb").is_none());

    let rss = common::peak_rss_kib(pid);
    eprintln!("peak RSS through the corpus: {} MiB", rss / 1024);
    assert!(rss < 64 * 1024, "peak RSS {rss} KiB: memory must stay bounded (a 10 MB finding, a 2 GB file)");
    daemon.kill().await.unwrap();
}

/// 1M tiny findings in one file: all delivered, memory flat. Long (about a minute in a debug
/// build): `cargo test --release --test bad_input -- --ignored`.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "long: run with --ignored (RELIABILITY.md)"]
async fn a_file_of_a_million_tiny_findings_is_delivered_in_bounded_memory() {
    let env = Env::new().await;
    let mut text = Vec::with_capacity(160 << 20);
    for i in 0..1_000_000 {
        text.extend_from_slice(finding(&format!("m{i}")).to_string().as_bytes());
        text.push(b'\n');
    }
    env.drop_file("million.ndjson", &text);
    drop(text);
    let mut daemon = env.spawn(&env.config(""));
    let pid = daemon.id().unwrap();
    env.wait_spool_empty(Duration::from_secs(900)).await;
    let stats = env.hub.stats();
    let rss = common::peak_rss_kib(pid);
    eprintln!("1M findings: accepted {}, peak RSS {} MiB", stats.accepted, rss / 1024);
    assert_eq!(env.hub.wait_for(1_000_000, Duration::from_secs(1)).await, 1_000_000);
    assert!(rss < 64 * 1024, "peak RSS {rss} KiB");
    daemon.kill().await.unwrap();
}
