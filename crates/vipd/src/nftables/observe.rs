//! Passive health of DNAT targets: the new flows the kernel rewrites are
//! watched (conntrack events), and a target that leaves `fall` of them in a
//! row unanswered for longer than its check's `timeout` is marked down at
//! once, without waiting for `fall` failed probes.
//!
//! A target whose link went down is found this way within about one
//! check timeout of the first SYN it swallowed, where the active checks
//! need `fall` intervals; the driver then drops it from the map and
//! forgets its unanswered flows, so the clients' retransmitted SYNs go to a
//! healthy plane. HAProxy's `observe layer4` with `on-error mark-down` is
//! the model. Only the active checks bring a target back (`rise`).
//!
//! [`Observer`] is the bookkeeping, fed with flows and the time; [`run`]
//! feeds it from the event socket. The DNAT rules set the rewritten flows'
//! event mask to `new,reply` while the watch is on (`ruleset.rs`): the
//! creation and the first answer are all it reads, and every TCP state
//! change would otherwise be one more message to this socket.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{debug, warn};
use vipd_core::health::ErrorLimit;

use super::conntrack::{self, Flow, Message};

/// Flows waiting for an answer, at most; past it new ones are not
/// tracked (a SYN flood must not grow the daemon without bound).
const MAX_PENDING: usize = 65_536;

/// One target as the observer sees it.
#[derive(Debug, Clone)]
pub struct Watched {
    pub address: SocketAddr,
    /// How long a SYN may stay unanswered: the check's timeout.
    pub timeout: Duration,
    /// Unanswered flows in a row that take it down: the check's `fall`.
    pub limit: u32,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    target: usize,
    since: Instant,
}

/// A target that tripped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tripped {
    pub target: usize,
    /// For the logs and the status: what was seen.
    pub reason: String,
}

/// The flows to VIP:port in flight and each target's streak of
/// unanswered ones.
#[derive(Debug)]
pub struct Observer {
    destination: SocketAddr,
    targets: Vec<(Watched, ErrorLimit)>,
    pending: HashMap<SocketAddr, Pending>,
}

impl Observer {
    pub fn new(destination: SocketAddr, targets: Vec<Watched>) -> Self {
        Self {
            destination,
            targets: targets
                .into_iter()
                .map(|w| {
                    let limit = ErrorLimit::new(w.limit);
                    (w, limit)
                })
                .collect(),
            pending: HashMap::new(),
        }
    }

    fn target_of(&self, flow: &Flow) -> Option<usize> {
        if flow.destination != self.destination {
            return None;
        }
        self.targets
            .iter()
            .position(|(w, _)| w.address == flow.replier)
    }

    /// A flow was created or changed at `now`.
    pub fn flow(&mut self, flow: &Flow, new: bool, now: Instant) {
        let Some(target) = self.target_of(flow) else {
            return;
        };
        if flow.answered {
            if self.pending.remove(&flow.source).is_some() {
                self.targets[target].1.success();
            }
        } else if new && self.pending.len() < MAX_PENDING {
            self.pending
                .insert(flow.source, Pending { target, since: now });
        }
    }

    /// A flow went away before it was judged.
    pub fn gone(&mut self, flow: &Flow) {
        if flow.destination == self.destination {
            self.pending.remove(&flow.source);
        }
    }

    /// Events were lost: what is pending may have been answered unseen, so
    /// it is forgotten rather than counted.
    pub fn lost_events(&mut self) {
        self.pending.clear();
    }

    /// Counts the flows left unanswered past their target's timeout and
    /// returns the targets that reached their limit.
    pub fn expire(&mut self, now: Instant) -> Vec<Tripped> {
        let mut expired: Vec<(SocketAddr, Pending)> = self
            .pending
            .iter()
            .filter(|(_, p)| {
                now.saturating_duration_since(p.since) >= self.targets[p.target].0.timeout
            })
            .map(|(s, p)| (*s, *p))
            .collect();
        expired.sort_by_key(|(_, p)| p.since);
        let mut tripped = Vec::new();
        for (source, pending) in expired {
            self.pending.remove(&source);
            let (watched, limit) = &mut self.targets[pending.target];
            if limit.error() {
                let reason = format!(
                    "{} new connections in a row unanswered for {:?} (observed)",
                    watched.limit, watched.timeout
                );
                if !tripped.iter().any(|t: &Tripped| t.target == pending.target) {
                    tripped.push(Tripped {
                        target: pending.target,
                        reason,
                    });
                }
            }
        }
        tripped
    }

    /// When the next pending flow expires.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending
            .values()
            .map(|p| p.since + self.targets[p.target].0.timeout)
            .min()
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

/// Watches this namespace's conntrack events until `marks` is closed,
/// sending each tripped target's index and reason. Returns an error only
/// when the event socket cannot be opened.
pub async fn run(
    mut observer: Observer,
    marks: mpsc::UnboundedSender<Tripped>,
) -> std::io::Result<()> {
    use netlink_sys::AsyncSocketExt as _;
    let socket = conntrack::event_socket()?;
    // One reused buffer, one recv per datagram (`recv_from_full` would peek
    // first and allocate: twice the system calls on a per-connection path).
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut lost = 0u64;
    loop {
        let deadline = observer.next_deadline();
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = marks.closed() => return Ok(()),
            () = sleep => {
                for tripped in observer.expire(Instant::now()) {
                    if marks.send(tripped).is_err() {
                        return Ok(());
                    }
                }
            }
            received = async {
                buf.clear();
                socket.recv(&mut buf).await
            } => match received {
                Ok(()) => {
                    let now = Instant::now();
                    for message in conntrack::parse(&buf) {
                        match message {
                            Message::Flow { flow, new } => observer.flow(&flow, new, now),
                            Message::Gone(flow) => observer.gone(&flow),
                            _ => {}
                        }
                    }
                }
                Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ENOBUFS as i32) => {
                    lost += 1;
                    if lost.is_power_of_two() {
                        warn!(times = lost, "conntrack events were lost (the socket overran): the unanswered-connection watch starts over");
                    }
                    observer.lost_events();
                }
                Err(e) => {
                    debug!(error = %e, "conntrack event socket");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIP: &str = "198.18.0.100:6443";

    fn observer() -> Observer {
        let watched = |a: &str| Watched {
            address: a.parse().unwrap(),
            timeout: Duration::from_millis(250),
            limit: 2,
        };
        Observer::new(
            VIP.parse().unwrap(),
            vec![watched("198.18.0.11:16443"), watched("198.18.0.12:16443")],
        )
    }

    fn flow(port: u16, target: &str, answered: bool) -> Flow {
        Flow {
            source: SocketAddr::new("198.18.0.21".parse().unwrap(), port),
            destination: VIP.parse().unwrap(),
            replier: target.parse().unwrap(),
            answered,
        }
    }

    #[test]
    fn a_target_that_answers_nothing_trips_after_its_limit() {
        let mut o = observer();
        let t0 = Instant::now();
        o.flow(&flow(1, "198.18.0.11:16443", false), true, t0);
        o.flow(&flow(2, "198.18.0.12:16443", false), true, t0);
        o.flow(
            &flow(2, "198.18.0.12:16443", true),
            false,
            t0 + Duration::from_millis(1),
        );
        o.flow(
            &flow(3, "198.18.0.11:16443", false),
            true,
            t0 + Duration::from_millis(10),
        );
        assert_eq!(o.next_deadline(), Some(t0 + Duration::from_millis(250)));
        assert_eq!(o.expire(t0 + Duration::from_millis(249)), []);
        assert_eq!(o.expire(t0 + Duration::from_millis(250)), [], "one of two");
        let tripped = o.expire(t0 + Duration::from_millis(260));
        assert_eq!(tripped.len(), 1);
        assert_eq!(tripped[0].target, 0);
        assert!(
            tripped[0].reason.contains("unanswered"),
            "{}",
            tripped[0].reason
        );
        assert_eq!(o.pending(), 0);
    }

    #[test]
    fn an_answer_in_between_breaks_the_streak() {
        let mut o = observer();
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        o.flow(&flow(1, "198.18.0.11:16443", false), true, ms(0));
        assert_eq!(o.expire(ms(300)), []);
        o.flow(&flow(2, "198.18.0.11:16443", false), true, ms(300));
        o.flow(&flow(2, "198.18.0.11:16443", true), false, ms(301));
        o.flow(&flow(3, "198.18.0.11:16443", false), true, ms(302));
        assert_eq!(o.expire(ms(600)), [], "the answer reset the streak");
    }

    #[test]
    fn other_destinations_updates_and_lost_events_count_for_nothing() {
        let mut o = observer();
        let t0 = Instant::now();
        let mut other = flow(1, "198.18.0.11:16443", false);
        other.destination = "198.18.0.100:443".parse().unwrap();
        o.flow(&other, true, t0);
        // An update of a flow never seen new is not tracked.
        o.flow(&flow(2, "198.18.0.11:16443", false), false, t0);
        // A flow to an address that is no target.
        o.flow(&flow(3, "198.18.0.99:16443", false), true, t0);
        assert_eq!(o.pending(), 0);
        o.flow(&flow(4, "198.18.0.11:16443", false), true, t0);
        o.flow(&flow(5, "198.18.0.11:16443", false), true, t0);
        o.lost_events();
        assert_eq!(o.expire(t0 + Duration::from_secs(1)), []);
        o.flow(&flow(6, "198.18.0.11:16443", false), true, t0);
        o.gone(&flow(6, "198.18.0.11:16443", false));
        assert_eq!(o.next_deadline(), None);
    }
}
