//! Zero-copy forwarding with splice(2): socket → pipe → socket, the bytes
//! never enter user space. Pipes come from a small pool and are held only
//! while bytes flow, so an idle session costs no pipe (and no descriptors).
//!
//! The two steps are plain non-blocking calls; the session's state machine
//! ([`super::session`]) decides when to make them.

use std::cell::RefCell;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

use nix::fcntl::{FcntlArg, OFlag, SpliceFFlags, fcntl, splice};

/// A pipe's capacity: large enough that one splice moves what a socket
/// typically has queued (the default 64 KiB halves bulk throughput).
const PIPE_SIZE: i32 = 1 << 20;
/// Pipes kept for reuse per thread; beyond this they are closed.
const POOL_LIMIT: usize = 256;

thread_local! {
    // Per worker thread: no lock on the forwarding path.
    static POOL: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
}

/// A pipe: the kernel buffer the bytes pass through.
#[derive(Debug)]
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    /// A pipe from this thread's pool, or a new one.
    pub fn take() -> io::Result<Pipe> {
        if let Some(pipe) = POOL.with_borrow_mut(Vec::pop) {
            return Ok(pipe);
        }
        let (read, write) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        // A smaller pipe still works: a failure here only costs speed.
        let _ = fcntl(&write, FcntlArg::F_SETPIPE_SZ(PIPE_SIZE));
        Ok(Pipe { read, write })
    }

    /// Returns an empty pipe to the pool. A pipe with bytes left in it (a
    /// session that ended mid-way) must be dropped instead.
    pub fn give_back(self) {
        POOL.with_borrow_mut(|pool| {
            if pool.len() < POOL_LIMIT {
                pool.push(self);
            }
        });
    }

    /// Moves what `socket` has queued into the pipe: the byte count, 0 at
    /// EOF, `WouldBlock` when the socket is empty.
    pub fn fill(&self, socket: BorrowedFd<'_>) -> io::Result<usize> {
        splice_io(socket, self.write_end())
    }

    /// Moves bytes from the pipe into `socket`: the byte count, or
    /// `WouldBlock` when the socket's send buffer is full.
    pub fn drain(&self, socket: BorrowedFd<'_>) -> io::Result<usize> {
        splice_io(self.read_end(), socket)
    }

    fn read_end(&self) -> BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.read)
    }

    fn write_end(&self) -> BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.write)
    }
}

const FLAGS: SpliceFFlags = SpliceFFlags::SPLICE_F_MOVE.union(SpliceFFlags::SPLICE_F_NONBLOCK);

fn splice_io(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> io::Result<usize> {
    splice(from, None, to, None, PIPE_SIZE as usize, FLAGS).map_err(io::Error::from)
}
