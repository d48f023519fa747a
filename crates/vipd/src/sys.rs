//! The one module where `unsafe` is allowed. Each block carries a SAFETY
//! comment. Keep it small: prefer a safe wrapper from `nix` or `socket2`.
#![allow(unsafe_code)]

use std::io;
use std::mem::{MaybeUninit, size_of};
use std::os::fd::{AsRawFd, BorrowedFd};

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

/// Registers a descriptor-owning value (a socket) with the tokio reactor.
pub fn register<T: AsRawFd + Into<std::os::fd::OwnedFd>>(
    io: T,
) -> io::Result<tokio::io::unix::AsyncFd<T>> {
    // SAFETY: a type that converts into an `OwnedFd` owns its descriptor
    // (socket2's and std's sockets do): it stays open and is the same
    // descriptor until the value is dropped, which happens only when the
    // `AsyncFd` that owns it is dropped or unwrapped.
    unsafe { tokio::io::unix::AsyncFd::register(io) }.map_err(|e| e.into_parts().1)
}

/// recv(2) on a non-blocking socket, as a plain system call. glibc's
/// `recv` is a thread-cancellation point and brackets every call with two
/// cancellation-state updates; vipd never cancels threads, and on the
/// proxy's forwarding path (two reads and two writes per request) that
/// bookkeeping was about 1.4 % of a worker's CPU time.
pub fn recv(fd: BorrowedFd<'_>, buffer: &mut [u8]) -> io::Result<usize> {
    // SAFETY: the descriptor is borrowed, so it stays open for the call;
    // the kernel writes at most `buffer.len()` bytes into `buffer`, which
    // we borrow mutably for the call; the two null pointers ask for no
    // source address.
    let n = unsafe {
        libc::syscall(
            libc::SYS_recvfrom,
            fd.as_raw_fd(),
            buffer.as_mut_ptr(),
            buffer.len(),
            0,
            std::ptr::null_mut::<libc::sockaddr>(),
            std::ptr::null_mut::<libc::socklen_t>(),
        )
    };
    result(n)
}

/// send(2) with `MSG_NOSIGNAL` (a peer that left gives `EPIPE`, not a
/// signal), as a plain system call, for the reason given at [`recv`].
pub fn send(fd: BorrowedFd<'_>, buffer: &[u8]) -> io::Result<usize> {
    // SAFETY: the descriptor is borrowed, so it stays open for the call;
    // the kernel reads at most `buffer.len()` bytes from `buffer`, borrowed
    // for the call; a null destination is what send(2) passes.
    let n = unsafe {
        libc::syscall(
            libc::SYS_sendto,
            fd.as_raw_fd(),
            buffer.as_ptr(),
            buffer.len(),
            libc::MSG_NOSIGNAL,
            std::ptr::null::<libc::sockaddr>(),
            0 as libc::socklen_t,
        )
    };
    result(n)
}

/// A system call's return: a count, or the error in `errno`.
fn result(n: libc::c_long) -> io::Result<usize> {
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// accept(2) of the next queued connection on a non-blocking listener, the
/// new socket non-blocking and close-on-exec from the start (accept4), and
/// the peer's address.
pub fn accept(listener: BorrowedFd<'_>) -> io::Result<(std::net::TcpStream, std::net::SocketAddr)> {
    // SAFETY: `try_init` hands us zeroed storage for any socket address and
    // its length; accept4 writes at most that length and updates it. The
    // listener is borrowed, so it stays open for the call.
    let (fd, address) = unsafe {
        SockAddr::try_init(|storage, len| {
            let fd = libc::accept4(
                listener.as_raw_fd(),
                storage.cast::<libc::sockaddr>(),
                len,
                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            );
            if fd < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(fd)
            }
        })?
    };
    // SAFETY: accept4 returned a new descriptor that nothing else owns; the
    // stream takes it over and closes it when dropped.
    let stream = unsafe { <std::net::TcpStream as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let address = address
        .as_socket()
        .ok_or_else(|| io::Error::other("accepted a peer without an IP address"))?;
    Ok((stream, address))
}
