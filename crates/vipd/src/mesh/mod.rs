//! The WireGuard mesh: every node routes the VIP to the VRRP master.
//!
//! WireGuard routes an address to exactly one peer (AllowedIPs is the
//! routing table on send and the source filter on receive), so a failover
//! means nothing on the mesh until every node moves the VIP's /32 (/128)
//! to the new master's peer. Each node's follower does that:
//!
//! - [`follow`]: the event loop around `vipd_core::vrrp::Follower` (the
//!   rules live in the core): adverts in, route changes out, carried out on
//!   the device and retried until it carries them;
//! - [`wireguard`]: the device, read and changed with `wg` (wireguard-tools),
//!   which speaks to the kernel module and to userspace implementations.

pub mod follow;
pub mod wireguard;
