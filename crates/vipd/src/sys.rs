//! The one module where `unsafe` is allowed. Each block carries a SAFETY
//! comment. Keep it small: prefer a safe wrapper from `nix` or `socket2`.
#![allow(unsafe_code)]

use std::io;
use std::mem::{MaybeUninit, size_of};

use nix::libc;
use socket2::{Domain, SockAddr, Socket, Type};

/// An `AF_PACKET` raw socket bound to one interface, for sending whole
/// Ethernet frames (gratuitous ARP, unsolicited NA). Protocol 0: it receives
/// nothing, so it never needs draining.
pub fn packet_socket(ifindex: u32) -> io::Result<Socket> {
    packet_socket_for(ifindex, 0)
}

/// An `AF_PACKET` raw socket bound to one interface that receives the
/// frames of one EtherType (`0x0806` for ARP) and can send any frame.
pub fn packet_socket_for(ifindex: u32, ethertype: u16) -> io::Result<Socket> {
    let protocol = (ethertype != 0).then(|| socket2::Protocol::from(i32::from(ethertype.to_be())));
    let socket = Socket::new(Domain::PACKET, Type::RAW, protocol)?;
    let index =
        i32::try_from(ifindex).map_err(|_| io::Error::other("interface index out of range"))?;
    // SAFETY: `try_init` hands us zeroed storage large enough for any socket
    // address; we write one `sockaddr_ll` (smaller than `sockaddr_storage`)
    // with a correct family and report its exact length.
    let ((), address) = unsafe {
        SockAddr::try_init(|storage, len| {
            let mut value: libc::sockaddr_ll = MaybeUninit::zeroed().assume_init();
            value.sll_family = libc::AF_PACKET as libc::sa_family_t;
            value.sll_ifindex = index;
            value.sll_protocol = ethertype.to_be();
            storage.cast::<libc::sockaddr_ll>().write(value);
            *len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            Ok(())
        })?
    };
    socket.bind(&address)?;
    Ok(socket)
}

/// Registers a socket with the tokio reactor.
pub fn async_socket(socket: Socket) -> io::Result<tokio::io::unix::AsyncFd<Socket>> {
    // SAFETY: a `socket2::Socket` owns its descriptor: it stays open and is
    // the same descriptor until the socket is dropped, which happens only
    // when the `AsyncFd` that owns it is dropped or unwrapped.
    unsafe { tokio::io::unix::AsyncFd::register(socket) }.map_err(|e| e.into_parts().1)
}
