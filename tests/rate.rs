//! Rate control against hubsim's quota (Security Hub's 10 requests/s, burst 30).

mod common;

use common::*;
use hubsim::{Options, Quota};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn agent_paces_itself_to_the_quota() {
    let quota = Quota { rate: 10.0, burst: 30.0 };
    let env = Env::with_options(Options { quota: Some(quota), ..Options::default() }).await;
    // 50 requests: the burst of 30, then 20 at 10/s.
    for f in 0..5 {
        env.drop_file(&format!("q{f}.json"), json!(findings(&format!("q{f}"), 1000)).to_string().as_bytes());
    }
    let config = env.config("[rate]\nrequests_per_second = 10.0\nburst = 30\n[batch]\nmax_in_flight = 4");
    let (ok, log) = env.run_once(&config).await;
    assert!(ok, "{log}");
    assert_eq!(env.hub.findings().len(), 5000);
    let stats = env.hub.stats();
    eprintln!("{stats:?}");
    // The client's bucket mirrors the server's; only arrival jitter can cause a rare 429.
    assert!(stats.throttled <= 5, "{} throttled requests", stats.throttled);
    assert_eq!(stats.largest_request, 100, "batches fill up when there is a backlog");
    assert_eq!(stats.requests - stats.throttled, 50);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sender_that_overshoots_the_quota_backs_off_and_delivers_everything() {
    let quota = Quota { rate: 10.0, burst: 10.0 };
    let env = Env::with_options(Options { quota: Some(quota), ..Options::default() }).await;
    env.drop_file("many.json", json!(findings("o", 4000)).to_string().as_bytes());
    // Configured far above the real quota: the adaptive rate must find it.
    let config = env.config("[rate]\nrequests_per_second = 100.0\nburst = 100\n[batch]\nmax_in_flight = 4");
    let (ok, log) = env.run_once(&config).await;
    assert!(ok, "{log}");
    assert_eq!(env.hub.findings().len(), 4000);
    let stats = env.hub.stats();
    eprintln!("{stats:?}");
    assert!(stats.throttled >= 1, "the quota was hit");
    assert!(log.contains("throttled by Security Hub; sending slower"), "the cut is logged with the new rate");
    assert!(stats.throttled < stats.requests - stats.throttled, "throttles stay a minority: {stats:?}");
}
