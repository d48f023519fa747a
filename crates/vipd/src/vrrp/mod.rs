//! The VRRP driver: the IO shell around `vipd_core::vrrp::Instance`.
//!
//! - [`socket`]: the raw protocol 112 socket (TTL 255, bound to the interface);
//! - [`driver`]: the event loop that feeds the instance packets, timers,
//!   link changes and the shutdown signal, and carries out its actions
//!   (adverts, VIP via netlink, gratuitous ARP / NA, logs, notify hooks);
//! - [`counters`]: drop counters by reason, logged at most once a second;
//! - [`status`]: what the instance shows `vipd status` and the metrics.

pub mod counters;
pub mod driver;
pub mod socket;
pub mod status;
