//! The sans-IO core of vipd.
//!
//! Nothing in this crate opens a socket, spawns a task or reads a clock. Every
//! input arrives as a value (a packet's bytes, a check result, the current
//! instant) and every output leaves as a value (an action for the IO shell to
//! carry out). That keeps the protocol rules testable on a virtual clock: a
//! test can run thousands of routers through partitions in milliseconds.
//!
//! - [`health`]: the rise/fall threshold logic shared by every health check.
//! - [`vrrp`]: the VRRP v2/v3 packet codec and the RFC 5798 state machine.

pub mod health;
pub mod vrrp;
