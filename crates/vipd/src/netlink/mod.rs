//! The kernel's view of links and addresses, through rtnetlink: look up an
//! interface, add and remove the VIP, and hear when a link goes down.
//!
//! Requests are idempotent where the daemon needs them to be: adding an
//! address that is already there, or removing one that is gone, is not an
//! error (a crashed run may have left the VIP; a peer may have raced us).

use std::net::IpAddr;

use futures::StreamExt;
use futures::channel::mpsc::UnboundedReceiver;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkLayerType, LinkMessage};
use rtnetlink::{Handle, MulticastGroup};

/// EEXIST and EADDRNOTAVAIL, as netlink reports them (negated errno).
const EEXIST: i32 = 17;
const EADDRNOTAVAIL: i32 = 99;
const ENODEV: i32 = 19;

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("netlink socket: {0}")]
    Socket(#[from] std::io::Error),
    #[error("interface {0} does not exist")]
    NoSuchInterface(String),
    #[error("{what}: {source}")]
    Request {
        what: String,
        #[source]
        source: rtnetlink::Error,
    },
}

/// What the VRRP driver needs to know of a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// Administratively up (`ip link set up`).
    pub up: bool,
    /// The carrier is there (IFF_LOWER_UP): a cable, a veth peer, a tunnel.
    pub lower_up: bool,
    /// The link resolves neighbours with ARP / NDP. WireGuard and tun do not:
    /// gratuitous ARP there is pointless.
    pub arp: bool,
    /// The link's hardware address, on Ethernet-like links.
    pub mac: Option<[u8; 6]>,
}

impl Link {
    /// Up and with a carrier: able to send and receive.
    pub fn usable(&self) -> bool {
        self.up && self.lower_up
    }

    fn from_message(message: &LinkMessage) -> Self {
        let flags = message.header.flags;
        let mut name = String::new();
        let mut mac = None;
        for attribute in &message.attributes {
            match attribute {
                LinkAttribute::IfName(n) => name.clone_from(n),
                LinkAttribute::Address(bytes) if bytes.len() == 6 => {
                    mac = Some(<[u8; 6]>::try_from(bytes.as_slice()).expect("six bytes"));
                }
                _ => {}
            }
        }
        Link {
            index: message.header.index,
            name,
            up: flags.contains(LinkFlags::Up),
            lower_up: flags.contains(LinkFlags::LowerUp),
            arp: !flags.contains(LinkFlags::Noarp)
                && message.header.link_layer_type == LinkLayerType::Ether,
            mac,
        }
    }
}

/// A handle on rtnetlink. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// Opens a netlink socket in the current network namespace; its
    /// connection task runs on the current tokio runtime.
    pub fn connect() -> Result<Self, NetlinkError> {
        let (connection, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(connection);
        Ok(Self { handle })
    }

    pub async fn link(&self, name: &str) -> Result<Link, NetlinkError> {
        let mut links = self.handle.link().get().match_name(name).execute();
        match links.next().await {
            Some(Ok(message)) => Ok(Link::from_message(&message)),
            Some(Err(rtnetlink::Error::NetlinkError(e))) if e.raw_code() == -ENODEV => {
                Err(NetlinkError::NoSuchInterface(name.to_owned()))
            }
            Some(Err(source)) => Err(NetlinkError::Request {
                what: format!("looking up interface {name}"),
                source,
            }),
            None => Err(NetlinkError::NoSuchInterface(name.to_owned())),
        }
    }

    /// Adds `address/prefix` to a link. Returns false if it was already there.
    pub async fn add_address(
        &self,
        index: u32,
        address: IpAddr,
        prefix: u8,
    ) -> Result<bool, NetlinkError> {
        let mut request = self.handle.address().add(index, address, prefix);
        if address.is_ipv6() {
            // A VIP must answer at once after a takeover: no duplicate
            // address detection (VRRP itself decides who holds it).
            let message = request.message_mut();
            message.header.flags |= AddressHeaderFlags::Nodad;
            message
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        match request.execute().await {
            Ok(()) => Ok(true),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -EEXIST => Ok(false),
            Err(source) => Err(NetlinkError::Request {
                what: format!("adding {address}/{prefix}"),
                source,
            }),
        }
    }

    /// Removes `address` from a link, whatever its prefix. Returns false if it
    /// was not there.
    pub async fn remove_address(&self, index: u32, address: IpAddr) -> Result<bool, NetlinkError> {
        let mut found = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .set_address_filter(address)
            .execute();
        let mut removed = false;
        while let Some(message) = found.next().await {
            let message = message.map_err(|source| NetlinkError::Request {
                what: format!("looking up {address}"),
                source,
            })?;
            match self.handle.address().del(message).execute().await {
                Ok(()) => removed = true,
                Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -EADDRNOTAVAIL => {}
                Err(source) => {
                    return Err(NetlinkError::Request {
                        what: format!("removing {address}"),
                        source,
                    });
                }
            }
        }
        Ok(removed)
    }

    /// Whether `address` is on the link.
    pub async fn has_address(&self, index: u32, address: IpAddr) -> Result<bool, NetlinkError> {
        let mut found = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        while let Some(message) = found.next().await {
            let message = message.map_err(|source| NetlinkError::Request {
                what: format!("listing addresses of link {index}"),
                source,
            })?;
            let matches = message.attributes.iter().any(|a| match a {
                AddressAttribute::Address(a) | AddressAttribute::Local(a) => *a == address,
                _ => false,
            });
            if matches {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// Link changes as the kernel announces them (RTNLGRP_LINK), like `ip monitor link`.
#[derive(Debug)]
pub struct LinkEvents {
    messages: UnboundedReceiver<(
        netlink_packet_core::NetlinkMessage<RouteNetlinkMessage>,
        netlink_sys::SocketAddr,
    )>,
}

impl LinkEvents {
    pub fn subscribe() -> Result<Self, NetlinkError> {
        let (connection, _handle, messages) =
            rtnetlink::new_multicast_connection(&[MulticastGroup::Link])?;
        tokio::spawn(connection);
        Ok(Self { messages })
    }

    /// The next change of any link; `None` when the socket closed. A link
    /// deleted comes as down (neither up nor a carrier).
    pub async fn next(&mut self) -> Option<Link> {
        while let Some((message, _)) = self.messages.next().await {
            match message.payload {
                netlink_packet_core::NetlinkPayload::InnerMessage(
                    RouteNetlinkMessage::NewLink(link),
                ) => return Some(Link::from_message(&link)),
                netlink_packet_core::NetlinkPayload::InnerMessage(
                    RouteNetlinkMessage::DelLink(link),
                ) => {
                    let mut gone = Link::from_message(&link);
                    gone.up = false;
                    gone.lower_up = false;
                    return Some(gone);
                }
                _ => {}
            }
        }
        None
    }
}
