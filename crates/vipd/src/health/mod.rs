//! Active health checks: a probe (TCP connect, or HTTPS GET of /readyz) run
//! on an interval, its results fed through the shared rise/fall thresholds
//! of `vipd_core::health`. VRRP trackers use it today; the proxy's backend
//! checks and the DNAT target set build on the same pieces.
//!
//! - [`probe`]: one check, with a deadline;
//! - [`tls`]: the rustls client configuration (cluster CA, or no verification);
//! - [`checker`]: the periodic task that turns results into up/down events;
//! - [`record`]: each target's last result, counts and latency histogram.

pub mod checker;
pub mod probe;
pub mod record;
pub mod tls;
