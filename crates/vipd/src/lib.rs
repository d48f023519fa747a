//! vipd: a highly available Kubernetes API endpoint in one binary.
//!
//! The protocol logic lives in the sans-IO crate `vipd-core`; this crate is
//! the IO shell around it, one module per subsystem:
//!
//! - [`config`]: the cluster file, its checks, and each node's resolved plan;
//! - [`cli`]: the command line (`vipd check`, `vipd config show`, ...);
//! - [`daemon`]: one node's subsystems started, supervised, reloaded and stopped in order;
//! - [`api`]: the control socket (`vipd status`, `vipd reload`) and the metrics;
//! - [`vrrp`]: the VRRP driver around `vipd_core::vrrp::Instance` (sockets, VIP, ARP/NA);
//! - [`mesh`]: the WireGuard mesh follower: the VIP routed to the master's peer;
//! - [`netlink`]: rtnetlink: links, the VIP address, link events;
//! - [`health`]: active health checks (TCP, HTTPS) and their records;
//! - [`proxy`]: the L4 proxy in front of the kube-apiservers;
//! - [`nftables`]: the DNAT datapath of a VIP holder (the `inet vipd` table);
//! - [`render`]: what `vipd render` prints for peer programs (WireGuard, kubeadm, DNS, kubelet);
//! - [`service`]: systemd's service protocol (ready, reload, stop, watchdog);
//! - [`vault`]: the age-encrypted secrets vault;
//! - [`import`]: `vipd import ansible`;
//! - [`lab`]: network-namespace topologies for tests and the lab;
//! - [`sys`]: the only place where `unsafe` is allowed.

pub mod api;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod health;
pub mod import;
pub mod lab;
pub mod mesh;
pub mod netlink;
pub mod nftables;
pub mod proxy;
pub mod render;
pub mod service;
pub mod sys;
pub mod vault;
pub mod vrrp;
