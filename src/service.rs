//! Process lifetime: SIGTERM and SIGINT cancel the one shutdown token.

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::info;

/// Cancels `shutdown` on the first SIGTERM or SIGINT.
pub fn cancel_on_signals(shutdown: CancellationToken) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
            () = shutdown.cancelled() => return,
        };
        info!(signal = name, "stopping: no new files; queued findings get the grace period");
        shutdown.cancel();
    });
    Ok(())
}

/// Talks to systemd (when started by it, `NOTIFY_SOCKET` set): `READY=1` once the spool is watched,
/// `WATCHDOG=1` while the sending loop's heartbeat moves, `STATUS=` with the counters, and
/// `STOPPING=1` at shutdown. Without systemd every call is a no-op.
pub async fn systemd(observe: crate::pipeline::Observe, shutdown: CancellationToken) {
    use sd_notify::NotifyState;
    use std::sync::atomic::Ordering;
    tokio::select! {
        () = observe.ready.notified() => {}
        () = shutdown.cancelled() => {
            let _ = sd_notify::notify(&[NotifyState::Stopping]);
            return;
        }
    }
    let _ = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status("watching the spool")]);
    let period = sd_notify::watchdog_enabled().map_or(std::time::Duration::from_secs(10), |w| w / 2);
    let mut tick = tokio::time::interval(period);
    let mut last_beat = u64::MAX;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => break,
        }
        let beat = observe.heartbeat.load(Ordering::Relaxed);
        let s = observe.stats.snapshot();
        let status = format!(
            "files finished {}, quarantined {}; findings accepted {}, dead-lettered {}; requests {}, throttled {}",
            s.files_finished,
            s.files_quarantined,
            s.findings_accepted,
            s.rejected.values().sum::<u64>(),
            s.requests,
            s.throttles
        );
        if beat != last_beat {
            // Only a moving heartbeat pings: a stuck sending loop lets the watchdog fire.
            let _ = sd_notify::notify(&[NotifyState::Watchdog, NotifyState::Status(&status)]);
            last_beat = beat;
        } else {
            tracing::warn!("the sending loop has not ticked for {period:?}; not pinging the watchdog");
        }
    }
    let _ = sd_notify::notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}
