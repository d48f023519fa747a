//! RFC 5798 §7.1's receive checks that need the configuration, shared by
//! the [`super::Instance`] of a holder and the [`super::Follower`] of every
//! node on a mesh: the same packet is judged the same way by both.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use super::packet::{Advertisement, PRIORITY_OWNER, Version};
use super::state::State;

/// What the receive checks compare an advert with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Receiver {
    vrid: u8,
    version: Version,
    ipv6: bool,
    /// Our virtual addresses, sorted, to compare with advertised lists.
    sorted_addresses: Vec<IpAddr>,
}

impl Receiver {
    pub(crate) fn new(vrid: u8, version: Version, virtual_addresses: &[IpAddr]) -> Receiver {
        let mut sorted_addresses = virtual_addresses.to_vec();
        sorted_addresses.sort_unstable();
        Receiver {
            vrid,
            version,
            ipv6: virtual_addresses.first().is_some_and(IpAddr::is_ipv6),
            sorted_addresses,
        }
    }

    /// §7.1: the VRID and the version are ours, the sender of our family.
    pub(crate) fn check(&self, src: IpAddr, advert: &Advertisement) -> Result<(), Rejected> {
        // §7.1: MUST verify that the VRID is configured on the interface.
        if advert.vrid != self.vrid {
            return Err(Rejected::WrongVrid {
                received: advert.vrid,
            });
        }
        // §7.1: MUST verify the version.
        if advert.version() != self.version {
            return Err(Rejected::WrongVersion {
                received: advert.version(),
            });
        }
        if src.is_ipv6() != self.ipv6 {
            return Err(Rejected::WrongAddressFamily);
        }
        Ok(())
    }

    /// §7.1: MAY verify the address list; on mismatch log, and drop unless
    /// the sender is the owner. The count must match and the order carries
    /// no meaning. (keepalived drops even the owner's; the RFC lets the
    /// owner win, so a misconfigured backup cannot keep the owner's
    /// addresses hostage.)
    pub(crate) fn check_addresses(&self, advert: &Advertisement) -> Result<Accepted, Rejected> {
        let mut addresses = advert.addresses.clone();
        addresses.sort_unstable();
        if addresses != self.sorted_addresses {
            if advert.priority != PRIORITY_OWNER {
                return Err(Rejected::AddressListMismatch);
            }
            return Ok(Accepted::AddressListMismatchFromOwner);
        }
        Ok(Accepted::Clean)
    }
}

/// An advertisement the instance processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    Clean,
    /// RFC 5798 §7.1: the address list differs from ours, but the sender is
    /// the address owner (priority 255), so it was processed anyway. The
    /// configurations disagree: log it.
    AddressListMismatchFromOwner,
}

/// An advertisement the instance dropped, by RFC 5798 §7.1's receive checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// In Initialize or Fault: nobody is listening.
    NotListening { state: State },
    /// §7.1: the VRID is not the one configured.
    WrongVrid { received: u8 },
    /// §7.1: the version is not the one configured.
    WrongVersion { received: Version },
    /// The advert's family differs from the instance's (another instance
    /// with the same VRID in the other family owns it).
    WrongAddressFamily,
    /// Our own advert looped back (multicast loop, or a unicast peer list
    /// naming ourselves).
    OwnAdvert,
    /// RFC 3768 §7.1 (VRRPv2 only): the interval differs from the configured
    /// one. VRRPv3 learns the master's interval instead.
    AdvertIntervalMismatch { received: Duration },
    /// RFC 5798 §7.1: the address list differs and the sender is not the
    /// owner, so the packet MUST be dropped.
    AddressListMismatch,
    /// A follower heard an advert from a node the cluster file does not
    /// name as a VIP holder ([`super::Follower`]).
    NotAHolder,
    /// Unicast mode: the sender is not one of [`super::Config::unicast_peers`].
    NotAPeer,
}

impl Rejected {
    /// A stable snake_case name for counters and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejected::NotListening { .. } => "not_listening",
            Rejected::WrongVrid { .. } => "wrong_vrid",
            Rejected::WrongVersion { .. } => "wrong_version",
            Rejected::WrongAddressFamily => "wrong_address_family",
            Rejected::OwnAdvert => "own_advert",
            Rejected::AdvertIntervalMismatch { .. } => "advert_interval_mismatch",
            Rejected::AddressListMismatch => "address_list_mismatch",
            Rejected::NotAHolder => "not_a_holder",
            Rejected::NotAPeer => "not_a_peer",
        }
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejected::NotListening { state } => write!(f, "advert ignored in state {state}"),
            Rejected::WrongVrid { received } => write!(f, "advert for VRID {received}"),
            Rejected::WrongVersion { received } => write!(f, "{received} advert"),
            Rejected::WrongAddressFamily => f.write_str("advert of the other address family"),
            Rejected::OwnAdvert => f.write_str("own advert looped back"),
            Rejected::AdvertIntervalMismatch { received } => {
                write!(f, "advert interval {received:?} differs from ours")
            }
            Rejected::AddressListMismatch => {
                f.write_str("virtual address list differs from ours (misconfiguration)")
            }
            Rejected::NotAHolder => f.write_str("not a VIP holder of the cluster file"),
            Rejected::NotAPeer => f.write_str("not a configured unicast peer"),
        }
    }
}
