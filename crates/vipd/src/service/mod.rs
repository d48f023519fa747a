//! The daemon's side of systemd's service protocol (sd_notify(3)), for
//! `Type=notify` units (deploy/systemd/vipd.service):
//!
//! - [`ready`] once the node is up: listeners bound, the DNAT table loaded,
//!   the VRRP instance running. `systemctl start` returns then, and units
//!   ordered after vipd start only then;
//! - [`reloading`] and [`ready`] around a reload (SIGHUP); the RELOADING
//!   message carries `MONOTONIC_USEC`, which systemd 253 and newer require
//!   (for `Type=notify-reload`), so the same daemon fits both unit types;
//! - [`stopping`] when a stop begins (the drain can take a while);
//! - [`status`]: the one line `systemctl status` shows;
//! - [`watchdog`]: `WATCHDOG=1` every half `WATCHDOG_USEC`, only while
//!   [`Liveness`] says every loop of the daemon goes round. A hung loop stops
//!   the pings and systemd restarts the service (`WatchdogSec=`,
//!   `Restart=on-failure`).
//!
//! Without systemd (`NOTIFY_SOCKET` unset) every call does nothing. The
//! environment is read, never changed: children (nft, notify commands)
//! inherit `NOTIFY_SOCKET`, and the unit's `NotifyAccess=main` makes systemd
//! ignore anything they might send.

mod liveness;

pub use liveness::{Liveness, Pulse, Stalled};

use std::time::Duration;

use sd_notify::NotifyState;
use tracing::{debug, warn};

/// Tells systemd the service is up (`READY=1`), with a status line. Also
/// ends a reload that [`reloading`] began.
pub fn ready(status_line: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status_line)]);
}

/// Tells systemd a reload began (`RELOADING=1` with `MONOTONIC_USEC`, in
/// one message as systemd requires). Send [`ready`] when it is done, also
/// when it failed and the old configuration stays.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[
            NotifyState::Reloading,
            now,
            NotifyState::Status("reloading the cluster file"),
        ]),
        // Cannot happen on Linux (CLOCK_MONOTONIC always exists); systemd
        // < 253 does not need the timestamp anyway.
        Err(e) => {
            warn!(error = %e, "cannot read CLOCK_MONOTONIC for systemd");
            send(&[NotifyState::Reloading]);
        }
    }
}

/// Tells systemd the service is stopping (`STOPPING=1`).
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// Sets the line `systemctl status` shows (`STATUS=`), e.g. the VRRP state.
/// A newline would end the field early: it is replaced by a space.
pub fn status(line: &str) {
    let line = line.replace('\n', " ");
    send(&[NotifyState::Status(&line)]);
}

/// How often to ping the watchdog: half of `WATCHDOG_USEC`, as
/// sd_watchdog_enabled(3) advises, or `None` when the unit has no
/// `WatchdogSec=` (or the variable is meant for another process).
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled()
        .filter(|timeout| !timeout.is_zero())
        .map(|timeout| timeout / 2)
}

/// Pings systemd's watchdog every `interval` while `alive` returns `Ok`.
/// When it returns an error, the pings stop and the error is logged once:
/// systemd kills and restarts the service after `WatchdogSec`. Should the
/// loops recover first, the pings resume. Runs until the task is dropped;
/// spawn it only when [`watchdog_interval`] returns an interval.
pub async fn watchdog(interval: Duration, alive: impl FnMut() -> Result<(), Stalled>) {
    watchdog_with(interval, alive, send).await;
}

/// [`watchdog`] with the sending left to the caller (tests capture it).
async fn watchdog_with(
    interval: Duration,
    mut alive: impl FnMut() -> Result<(), Stalled>,
    mut send: impl FnMut(&[NotifyState<'_>]),
) {
    // tokio's interval panics on zero.
    let mut ticks = tokio::time::interval(interval.max(Duration::from_millis(1)));
    // After a stall (a blocked runtime), one ping, not a burst.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stalled = false;
    loop {
        ticks.tick().await;
        match alive() {
            Ok(()) => {
                if stalled {
                    warn!("the stalled loop goes round again: watchdog pings resume");
                    stalled = false;
                }
                send(&[NotifyState::Watchdog]);
            }
            Err(e) => {
                if !stalled {
                    warn!("{e}: no more watchdog pings, systemd will restart vipd");
                    stalled = true;
                }
            }
        }
    }
}

/// Sends one message; a failure is logged, never fatal (vipd runs the same
/// without a service manager).
fn send(states: &[NotifyState<'_>]) {
    match sd_notify::notify(states) {
        Ok(()) => debug!(?states, "told the service manager"),
        Err(e) => warn!(error = %e, "cannot notify the service manager (NOTIFY_SOCKET)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// The messages sent, one string each.
    type Sent = Arc<Mutex<Vec<String>>>;

    fn capture() -> (Sent, impl FnMut(&[NotifyState<'_>])) {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let sink = sent.clone();
        let send = move |states: &[NotifyState<'_>]| {
            let message: Vec<String> = states.iter().map(ToString::to_string).collect();
            sink.lock().unwrap().push(message.join("\n"));
        };
        (sent, send)
    }

    #[tokio::test(start_paused = true)]
    async fn pings_every_interval_while_alive_and_stops_while_stalled() {
        let liveness = Liveness::new();
        let pulse = liveness.pulse("vrrp", Duration::from_secs(3));
        let (sent, send) = capture();
        let check = liveness.clone();
        let task = tokio::spawn(watchdog_with(
            Duration::from_secs(1),
            move || check.check(),
            send,
        ));
        // The loop beats every second for 5 s: a ping each second (the
        // first at once).
        for _ in 0..5 {
            pulse.beat();
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let alive_pings = sent.lock().unwrap().len();
        assert!((5..=6).contains(&alive_pings), "{alive_pings} pings in 5 s");
        assert!(sent.lock().unwrap().iter().all(|m| m == "WATCHDOG=1"));
        // The loop hangs: within its 3 s limit the pings go on, then stop.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let stalled_pings = sent.lock().unwrap().len() - alive_pings;
        assert!(stalled_pings <= 4, "{stalled_pings} pings while stalled");
        let before = sent.lock().unwrap().len();
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(sent.lock().unwrap().len(), before, "pinged while stalled");
        // It recovers: the pings resume.
        pulse.beat();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(
            sent.lock().unwrap().len() > before,
            "no ping after recovery"
        );
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_pulse_that_ended_does_not_stop_the_pings() {
        let liveness = Liveness::new();
        drop(liveness.pulse("dnat", Duration::from_secs(1)));
        let (sent, send) = capture();
        let check = liveness.clone();
        let task = tokio::spawn(watchdog_with(
            Duration::from_secs(1),
            move || check.check(),
            send,
        ));
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(sent.lock().unwrap().len() >= 5);
        task.abort();
    }
}
