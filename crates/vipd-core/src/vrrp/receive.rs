//! RFC 5798 §7.1's receive checks that need the configuration, shared by
//! the [`super::Instance`] of a holder and the [`super::Follower`] of every
//! node on a mesh: the same packet is judged the same way by both.

use std::net::IpAddr;

use super::instance::{Accepted, PRIORITY_OWNER, Rejected};
use super::packet::{Advertisement, Version};

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
