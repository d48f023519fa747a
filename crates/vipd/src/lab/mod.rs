//! The lab: whole clusters in network namespaces on one machine.
//!
//! [`netns`] builds the topologies (namespaces, a bridge, veth links,
//! processes inside them) and always takes them down again. The tests use it
//! today; `vipd lab` builds on it.

pub mod netns;
