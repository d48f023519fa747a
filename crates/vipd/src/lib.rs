//! vipd: a highly available Kubernetes API endpoint in one binary.
//!
//! The protocol logic lives in the sans-IO crate `vipd-core`; this crate is
//! the IO shell around it, one module per subsystem:
//!
//! - [`config`]: the cluster file, its checks, and each node's resolved plan;
//! - [`cli`]: the command line (`vipd check`, `vipd config show`, ...);
//! - [`lab`]: network-namespace topologies for tests and the lab;
//! - [`nftables`]: the DNAT datapath of a VIP holder (the `inet vipd` table);
//! - [`sys`]: the only place where `unsafe` is allowed.

pub mod cli;
pub mod config;
pub mod health;
pub mod lab;
pub mod netlink;
pub mod nftables;
pub mod proxy;
pub mod render;
pub mod sys;
pub mod vrrp;
