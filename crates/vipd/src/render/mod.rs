//! Configuration for other programs, generated from the cluster file: pure
//! functions from a spec and a node's plan to text, printed by `vipd render`.
//!
//! - [`keepalived`]: keepalived.conf for a VIP holder;
//! - [`haproxy`]: haproxy.cfg for a node that runs a proxy.

pub mod haproxy;
pub mod keepalived;
