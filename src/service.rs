//! Process lifetime: SIGTERM and SIGINT cancel the one shutdown token.

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::info;

/// Cancels `shutdown` on the first SIGTERM or SIGINT; calls `reload` on each SIGHUP and `report`
/// on each SIGUSR1 (instead of the default of dying, which would surprise a `kill -HUP`).
pub fn handle_signals(
    shutdown: CancellationToken,
    reload: impl Fn() + Send + 'static,
    report: impl Fn() + Send + 'static,
) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    tokio::spawn(async move {
        loop {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
                _ = hup.recv() => {
                    let _ = notify(&[sd_notify::NotifyState::Reloading]);
                    reload();
                    let _ = notify(&[sd_notify::NotifyState::Ready]);
                    continue;
                }
                _ = usr1.recv() => {
                    report();
                    continue;
                }
                () = shutdown.cancelled() => return,
            };
            info!(signal = name, "stopping: no new files; queued findings get the grace period");
            shutdown.cancel();
            return;
        }
    });
    Ok(())
}

/// The counters in one line, for `STATUS=` and SIGUSR1.
pub fn summary(s: &crate::pipeline::stats::Snapshot) -> String {
    format!(
        "files finished {}, quarantined {}; findings accepted {}, dead-lettered {}; requests {}, throttled {}",
        s.files_finished,
        s.files_quarantined,
        s.findings_accepted,
        s.rejected.values().sum::<u64>(),
        s.requests,
        s.throttles
    )
}

/// Sends `states` to `$NOTIFY_SOCKET` (if set) without ever blocking. `sd_notify::notify` sends
/// on a blocking socket: once the receiver's queue is full (`net.unix.max_dgram_qlen`, 10 by
/// default) it waits, which here would stall a runtime thread — and shutdown with it (seen with
/// a notify socket nobody read). A message there is no room for is dropped; the next carries
/// the same news.
pub fn notify(states: &[sd_notify::NotifyState]) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return Ok(()) };
    let message = states.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
    let socket = UnixDatagram::unbound()?;
    socket.set_nonblocking(true)?;
    let address = match path.as_bytes().strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name)?,
        None => SocketAddr::from_pathname(&path)?,
    };
    socket.send_to_addr(message.as_bytes(), &address).map(drop)
}

/// The first sending loop whose heartbeat did not move between two looks, if any. A loop that
/// was not there at the first look counts as moving.
pub fn stuck(before: &[u64], now: &[u64]) -> Option<usize> {
    now.iter().zip(before).position(|(n, b)| n == b)
}

/// Talks to systemd (when started by it, `NOTIFY_SOCKET` set): `READY=1` once the spool is watched,
/// `WATCHDOG=1` while the sending loop's heartbeat moves, `STATUS=` with the counters, and
/// `STOPPING=1` at shutdown. Without systemd every call is a no-op.
pub async fn systemd(observe: crate::pipeline::Observe, shutdown: CancellationToken) {
    use sd_notify::NotifyState;
    tokio::select! {
        () = observe.ready.notified() => {}
        () = shutdown.cancelled() => {
            let _ = notify(&[NotifyState::Stopping]);
            return;
        }
    }
    let _ = notify(&[NotifyState::Ready, NotifyState::Status("watching the spool")]);
    let period = sd_notify::watchdog_enabled().map_or(std::time::Duration::from_secs(10), |w| w / 2);
    let mut tick = tokio::time::interval(period);
    let mut last: Vec<u64> = Vec::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => break,
        }
        let lanes = observe.lanes();
        let beats: Vec<u64> = lanes.iter().map(|l| l.beats()).collect();
        let status = summary(&observe.stats.snapshot());
        match stuck(&last, &beats) {
            None => {
                // Only moving heartbeats ping: one stuck sending loop lets the watchdog fire.
                let _ = notify(&[NotifyState::Watchdog, NotifyState::Status(&status)]);
            }
            Some(i) => tracing::warn!(
                destination = %lanes[i].name,
                "the sending loop has not ticked for {period:?}; not pinging the watchdog"
            ),
        }
        last = beats;
    }
    let _ = notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

#[cfg(test)]
mod tests {
    use super::stuck;

    #[test]
    fn the_watchdog_is_fed_only_while_every_sending_loop_moves() {
        assert_eq!(stuck(&[], &[0, 0]), None, "first look: nothing to compare");
        assert_eq!(stuck(&[3, 7], &[4, 8]), None);
        assert_eq!(stuck(&[3, 7], &[4, 7]), Some(1), "the second destination's loop is stuck");
        assert_eq!(stuck(&[3], &[3, 1]), Some(0));
        assert_eq!(stuck(&[3], &[4, 0]), None, "a loop added since the last look counts as moving");
    }
}
