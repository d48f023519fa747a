//! vipd: a highly available Kubernetes API endpoint in one binary.
//!
//! The protocol logic lives in the sans-IO crate `vipd-core`; this crate is
//! the IO shell around it, one module per subsystem:
//!
//! - [`config`]: the cluster file, its checks, and each node's resolved plan;
//! - [`cli`]: the command line (`vipd check`, `vipd config show`, ...);
//! - [`daemon`]: one node's subsystems started, supervised, reloaded and stopped in order;
//! - [`api`]: the control socket (`vipd status`, `vipd reload`) and the metrics;
//! - [`lab`]: network-namespace topologies for tests and the lab;
//! - [`nftables`]: the DNAT datapath of a VIP holder (the `inet vipd` table);
//! - [`render`]: what `vipd render` prints for peer programs (WireGuard, kubeadm, DNS, kubelet);
//! - [`service`]: systemd's service protocol (ready, reload, stop, watchdog);
//! - [`sys`]: the only place where `unsafe` is allowed.

pub mod api;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod health;
pub mod import;
pub mod lab;
pub mod netlink;
pub mod nftables;
pub mod proxy;
pub mod render;
pub mod service;
pub mod sys;
pub mod vault;
pub mod vrrp;
