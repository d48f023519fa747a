//! The raw IP protocol 112 socket of one VRRP instance.
//!
//! Bound to the instance's interface (SO_BINDTODEVICE), so adverts of the
//! same VRID on other links never reach it. It sends with TTL / hop limit
//! 255 (RFC 5798 §5.1.1.3, §5.1.2.3) and the node's own address as source,
//! and hands every received datagram to the caller with what the TTL check
//! and the checksum need: the IPv4 header for IPv4 (raw IPv4 sockets deliver
//! it), the hop limit and destination from control messages for IPv6.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

use nix::libc;
use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, SockaddrIn, SockaddrIn6, recvmsg, sendmsg,
    setsockopt, sockopt,
};
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;

/// IANA: VRRP is IP protocol 112.
pub const IPPROTO_VRRP: i32 = 112;
/// RFC 5798 §5.1.1.2: the IPv4 multicast group.
pub const GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// RFC 5798 §5.1.2.2: the IPv6 multicast group.
pub const GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);

/// One received datagram.
#[derive(Debug)]
pub enum Datagram<'a> {
    /// The whole IPv4 packet, header included: parse it with
    /// `vipd_core::vrrp::Ipv4Header::parse`.
    V4(&'a [u8]),
    /// The VRRP message, with what the IPv6 header said.
    V6 {
        src: Ipv6Addr,
        dst: Ipv6Addr,
        hop_limit: u8,
        payload: &'a [u8],
    },
}

/// A datagram that passed the IP-level checks: its VRRP message and the
/// addresses its checksum and the receive checks need.
#[derive(Debug)]
pub struct Packet<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub payload: &'a [u8],
}

/// Why a datagram was dropped before decoding, for the drop counters.
#[derive(Debug)]
pub struct Dropped {
    pub reason: &'static str,
    pub detail: String,
}

impl<'a> Datagram<'a> {
    /// The IPv4 header (IPv4), then RFC 5798 §7.1's TTL / hop limit rule:
    /// 255, or the packet was routed.
    pub fn open(self) -> Result<Packet<'a>, Dropped> {
        let (src, dst, ttl, payload) = match self {
            Datagram::V4(packet) => match vipd_core::vrrp::Ipv4Header::parse(packet) {
                Ok((header, payload)) => (
                    IpAddr::V4(header.src),
                    IpAddr::V4(header.dst),
                    header.ttl,
                    payload,
                ),
                Err(e) => {
                    return Err(Dropped {
                        reason: e.reason(),
                        detail: e.to_string(),
                    });
                }
            },
            Datagram::V6 {
                src,
                dst,
                hop_limit,
                payload,
            } => (IpAddr::V6(src), IpAddr::V6(dst), hop_limit, payload),
        };
        if let Err(e) = vipd_core::vrrp::check_ttl(ttl) {
            return Err(Dropped {
                reason: e.reason(),
                detail: format!("from {src}: {e}"),
            });
        }
        Ok(Packet { src, dst, payload })
    }
}

/// A VRRP socket on one interface, for one address family.
#[derive(Debug)]
pub struct VrrpSocket {
    fd: AsyncFd<Socket>,
    ifindex: u32,
    source: IpAddr,
}

impl VrrpSocket {
    /// Opens the socket on `ifname` (index `ifindex`), sending from `source`
    /// (the node's address). With `multicast`, joins the VRRP group there.
    pub fn open(ifname: &str, ifindex: u32, source: IpAddr, multicast: bool) -> io::Result<Self> {
        let domain = if source.is_ipv4() {
            Domain::IPV4
        } else {
            Domain::IPV6
        };
        let socket = Socket::new(domain, Type::RAW, Some(Protocol::from(IPPROTO_VRRP)))?;
        socket.bind_device(Some(ifname.as_bytes()))?;
        socket.set_nonblocking(true)?;
        match source {
            IpAddr::V4(_) => {
                socket.set_ttl_v4(255)?;
                socket.set_multicast_ttl_v4(255)?;
                // Our own adverts must not come back to us.
                socket.set_multicast_loop_v4(false)?;
                if multicast {
                    socket
                        .join_multicast_v4_n(&GROUP_V4, &InterfaceIndexOrAddress::Index(ifindex))?;
                }
            }
            IpAddr::V6(_) => {
                socket.set_unicast_hops_v6(255)?;
                socket.set_multicast_hops_v6(255)?;
                socket.set_multicast_loop_v6(false)?;
                setsockopt(&socket, sockopt::Ipv6RecvHopLimit, &true)?;
                setsockopt(&socket, sockopt::Ipv6RecvPacketInfo, &true)?;
                if multicast {
                    socket.join_multicast_v6(&GROUP_V6, ifindex)?;
                }
            }
        }
        Ok(Self {
            fd: crate::sys::register(socket)?,
            ifindex,
            source,
        })
    }

    /// Waits for one datagram; `buf` holds it, the result borrows from it.
    pub async fn recv<'a>(&self, buf: &'a mut [u8]) -> io::Result<Datagram<'a>> {
        recv_on(&self.fd, self.source.is_ipv6(), buf)
            .await
            .map(|(_, datagram)| datagram)
    }

    /// Sends one VRRP message to `dst` (the group or a unicast peer) from
    /// the node's address, out of the bound interface.
    pub async fn send(&self, dst: IpAddr, message: &[u8]) -> io::Result<()> {
        loop {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|fd| send_to(fd.get_ref(), self.ifindex, self.source, dst, message))
            {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }
}

/// One IPv4 datagram and the index of the interface it arrived on (0 when
/// IP_PKTINFO is not on).
fn recv_v4_on(socket: &Socket, buf: &mut [u8]) -> io::Result<(usize, u32)> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut control = nix::cmsg_space!(libc::in_pktinfo);
    let message = recvmsg::<SockaddrIn>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut control),
        MsgFlags::MSG_DONTWAIT,
    )?;
    let mut ifindex = 0;
    for cmsg in message.cmsgs()? {
        if let ControlMessageOwned::Ipv4PacketInfo(info) = cmsg {
            ifindex = u32::try_from(info.ipi_ifindex).unwrap_or(0);
        }
    }
    Ok((message.bytes, ifindex))
}

/// One IPv6 datagram: its length, source, destination and hop limit, and
/// the index of the interface it arrived on.
#[allow(clippy::type_complexity)]
fn recv_v6_on(
    socket: &Socket,
    buf: &mut [u8],
) -> io::Result<(usize, (Ipv6Addr, Ipv6Addr, u8), u32)> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut control = nix::cmsg_space!(libc::in6_pktinfo, libc::c_int);
    let message = recvmsg::<SockaddrIn6>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut control),
        MsgFlags::MSG_DONTWAIT,
    )?;
    let src = message
        .address
        .map(|a| a.ip())
        .unwrap_or(Ipv6Addr::UNSPECIFIED);
    let mut dst = Ipv6Addr::UNSPECIFIED;
    let mut ifindex = 0;
    // No hop limit reported reads as 0 and fails the TTL check: never assume 255.
    let mut hop_limit = 0u8;
    for cmsg in message.cmsgs()? {
        match cmsg {
            ControlMessageOwned::Ipv6PacketInfo(info) => {
                dst = Ipv6Addr::from(info.ipi6_addr.s6_addr);
                ifindex = info.ipi6_ifindex;
            }
            ControlMessageOwned::Ipv6HopLimit(limit) => {
                hop_limit = u8::try_from(limit).unwrap_or(0)
            }
            _ => {}
        }
    }
    Ok((message.bytes, (src, dst, hop_limit), ifindex))
}

/// A receive-only protocol 112 socket on every interface, for a mesh
/// follower: it reports the interface each advert arrived on, so an advert
/// that did not come through the WireGuard interface (where the peer key
/// authenticates its sender) is counted and dropped rather than unseen.
#[derive(Debug)]
pub struct ListenSocket {
    fd: AsyncFd<Socket>,
    ipv6: bool,
}

impl ListenSocket {
    pub fn open(ipv6: bool) -> io::Result<Self> {
        let domain = if ipv6 { Domain::IPV6 } else { Domain::IPV4 };
        let socket = Socket::new(domain, Type::RAW, Some(Protocol::from(IPPROTO_VRRP)))?;
        socket.set_nonblocking(true)?;
        if ipv6 {
            setsockopt(&socket, sockopt::Ipv6RecvHopLimit, &true)?;
            setsockopt(&socket, sockopt::Ipv6RecvPacketInfo, &true)?;
        } else {
            setsockopt(&socket, sockopt::Ipv4PacketInfo, &true)?;
        }
        Ok(Self {
            fd: crate::sys::register(socket)?,
            ipv6,
        })
    }

    /// Waits for one datagram: the index of its interface, and the datagram.
    pub async fn recv<'a>(&self, buf: &'a mut [u8]) -> io::Result<(u32, Datagram<'a>)> {
        recv_on(&self.fd, self.ipv6, buf).await
    }
}

/// Waits for one datagram on `fd`: the index of its interface (0 unless
/// packet info is on), and the datagram, borrowed from `buf`.
async fn recv_on<'a>(
    fd: &AsyncFd<Socket>,
    ipv6: bool,
    buf: &'a mut [u8],
) -> io::Result<(u32, Datagram<'a>)> {
    loop {
        let mut guard = fd.readable().await?;
        let result = guard.try_io(|fd| match ipv6 {
            false => recv_v4_on(fd.get_ref(), buf).map(|(len, ifindex)| (len, None, ifindex)),
            true => {
                recv_v6_on(fd.get_ref(), buf).map(|(len, meta, ifindex)| (len, Some(meta), ifindex))
            }
        });
        match result {
            Ok(Ok((len, None, ifindex))) => return Ok((ifindex, Datagram::V4(&buf[..len]))),
            Ok(Ok((len, Some((src, dst, hop_limit)), ifindex))) => {
                return Ok((
                    ifindex,
                    Datagram::V6 {
                        src,
                        dst,
                        hop_limit,
                        payload: &buf[..len],
                    },
                ));
            }
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => continue,
        }
    }
}

fn send_to(
    socket: &Socket,
    ifindex: u32,
    source: IpAddr,
    dst: IpAddr,
    message: &[u8],
) -> io::Result<()> {
    let iov = [IoSlice::new(message)];
    match (source, dst) {
        (IpAddr::V4(source), IpAddr::V4(dst)) => {
            // IP_PKTINFO picks the source address and the interface for this
            // datagram, whatever addresses (the VIP among them) the link has.
            let info = libc::in_pktinfo {
                ipi_ifindex: ifindex as libc::c_int,
                ipi_spec_dst: libc::in_addr {
                    s_addr: u32::from(source).to_be(),
                },
                ipi_addr: libc::in_addr { s_addr: 0 },
            };
            let to = SockaddrIn::from(SocketAddrV4::new(dst, 0));
            sendmsg(
                socket.as_raw_fd(),
                &iov,
                &[ControlMessage::Ipv4PacketInfo(&info)],
                MsgFlags::empty(),
                Some(&to),
            )?;
        }
        (IpAddr::V6(source), IpAddr::V6(dst)) => {
            let info = libc::in6_pktinfo {
                ipi6_addr: libc::in6_addr {
                    s6_addr: source.octets(),
                },
                ipi6_ifindex: ifindex,
            };
            let to = SockaddrIn6::from(SocketAddrV6::new(dst, 0, 0, ifindex));
            sendmsg(
                socket.as_raw_fd(),
                &iov,
                &[ControlMessage::Ipv6PacketInfo(&info)],
                MsgFlags::empty(),
                Some(&to),
            )?;
        }
        _ => {
            return Err(io::Error::other(format!(
                "cannot send from {source} to {dst}: address families differ"
            )));
        }
    }
    Ok(())
}
