//! The kernel datapath of a VIP holder with `datapath = "dnat"`: one
//! nftables table of its own, `inet vipd`, and nothing outside it.
//!
//! New TCP flows to VIP:port (from other hosts and from the holder itself)
//! are rewritten to a healthy plane's proxy port and source-NATed to the
//! holder's address; conntrack keeps each flow on its plane. The health
//! checks decide the target set, and every change replaces the rules in one
//! nft transaction. With `[firewall]` the same table drops and counts the
//! sources that are not allowed.
//!
//! - [`ruleset`]: the table as nft text, a pure function of the plan and the
//!   healthy targets (golden-tested; `vipd render nftables` prints it);
//! - [`apply`]: running `nft` to check, load, list and remove it;
//! - [`conntrack`]: ctnetlink, to forget the flows a dead target never
//!   answered (so their retransmitted SYNs are rewritten afresh) and to hear
//!   new flows;
//! - [`observe`]: passive health, a target that leaves new flows
//!   unanswered is marked down without waiting for the checks;
//! - [`driver`]: the loop the daemon runs ([`run`]).
//!
//! With `datapath = "proxy"` a VIP holder loads only [`guard`]: its own
//! table `inet vipd_guard`, which keeps the kernel from refusing clients
//! while a crashed vipd leaves the VIP behind.

pub mod apply;
pub mod conntrack;
pub mod driver;
pub mod guard;
pub mod observe;
pub mod ruleset;

pub use apply::{Nft, NftError};
pub use driver::{DnatStatus, SharedDnatStatus, run, run_with, serve};
