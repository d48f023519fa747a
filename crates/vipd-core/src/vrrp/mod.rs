//! VRRP v2 (RFC 3768) and v3 (RFC 5798, updated by RFC 9568), sans IO.
//!
//! # Files
//!
//! - [`packet`]: the advertisement codec. [`Advertisement::decode`] /
//!   [`Advertisement::encode`], the checksum conventions ([`ChecksumMode`]),
//!   the IPv4 header of raw sockets ([`Ipv4Header`]) and the TTL rule
//!   ([`check_ttl`]), the priority field's special values
//!   ([`PRIORITY_STOP`], [`PRIORITY_OWNER`]). Every drop has a typed error
//!   with a stable `reason()`.
//! - [`announce`]: gratuitous ARP and unsolicited Neighbor Advertisement
//!   frames, virtual MAC addresses.
//! - [`config`]: what one virtual router is configured with ([`Config`]).
//! - [`instance`]: the RFC 5798 §6.4 state machine ([`Instance`]).
//! - [`follower`]: a mesh follower ([`Follower`]): which holder is master,
//!   from the adverts the holders send it, so the VIP is routed there.
//! - `receive`: the §7.1 receive checks both share, and their verdicts
//!   ([`Accepted`], [`Rejected`]).
//! - [`state`]: the states an instance is in ([`State`]) and why it
//!   faults ([`FaultReason`]).
//! - [`track`]: keepalived's tracker weights: the effective priority and
//!   the fault the trackers and the link give an instance ([`assess`]).
//! - [`timer`]: caller-supplied time ([`Timestamp`]) and the §6.1 interval
//!   arithmetic (Skew_Time, Master_Down_Interval).
//!
//! # Flow
//!
//! ```text
//!  raw socket bytes
//!        │ Ipv4Header::parse (IPv4) / IPV6_RECVHOPLIMIT (IPv6)
//!        │ check_ttl                                   ─► drop: ttl_not_255
//!        │ instance.check_source (unicast peers)       ─► drop: not_a_peer
//!        ▼
//!  Advertisement::decode(payload, src, dst, &instance.decode_options())
//!        │                                              ─► drop: DecodeError::reason()
//!        ▼
//!  instance.handle_advert(now, src, &advert)            ─► drop: Rejected::reason()
//!  instance.handle_timeout(now)       at instance.next_timeout()
//!  track::assess(priority, trackers, link)  → set_priority / set_fault / clear_fault
//!  instance.startup / shutdown
//!        │
//!        ▼
//!  while let Some(action) = instance.poll_action():
//!     StateChanged  → log, metrics, notify
//!     AddVip / RemoveVip → netlink
//!     SendAdvert(advert) → advert.encode(src, group or peer, mode), send TTL 255
//!     SendGratuitous(vip) → announce::gratuitous_arp / unsolicited_na_frame
//! ```
//!
//! Nothing here reads a clock or touches a socket: the same code runs under
//! the daemon and under the deterministic multi-router simulation in
//! `tests/simulation.rs`.

pub mod announce;
mod checksum;
pub mod config;
pub mod follower;
pub mod instance;
pub mod packet;
mod receive;
pub mod state;
pub mod timer;
pub mod track;

pub use config::{Config, ConfigError};
pub use follower::{Follower, FollowerAction, FollowerConfig, Route, RouteReason};
pub use instance::{Action, Instance, MasterInfo, Reason, ReconfigureError};
pub use packet::{
    Advertisement, Auth, ChecksumMode, DecodeError, DecodeOptions, EncodeError, Ipv4Header,
    Ipv4HeaderError, PRIORITY_OWNER, PRIORITY_STOP, TtlNot255, Version, VersionFields, check_ttl,
};
pub use receive::{Accepted, Rejected};
pub use state::{FaultReason, State};
pub use timer::{Centiseconds, Timestamp};
pub use track::{Assessment, TrackerState, assess};
