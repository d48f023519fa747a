//! The lab: whole clusters in network namespaces on one machine.
//!
//! - [`netns`]: topologies (namespaces, a bridge, veth links, processes
//!   inside them) that always take themselves down again;
//! - [`pki`]: a throw-away CA and apiserver certificates;
//! - [`apiserver`]: a stand-in kube-apiserver whose health can be switched.
//!
//! The tests use them today; `vipd lab` builds on them.

pub mod apiserver;
pub mod netns;
pub mod pki;
