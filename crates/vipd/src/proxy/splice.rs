//! Zero-copy forwarding with splice(2): socket → pipe → socket, the bytes
//! never enter user space. Pipes come from a small pool and are held only
//! while bytes flow, so an idle session costs no pipe (and no descriptors).

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsFd, OwnedFd};

use nix::fcntl::{FcntlArg, OFlag, SpliceFFlags, fcntl, splice};
use tokio::io::Interest;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

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
    fn take() -> io::Result<Pipe> {
        if let Some(pipe) = POOL.with_borrow_mut(Vec::pop) {
            return Ok(pipe);
        }
        let (read, write) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        // A smaller pipe still works: a failure here only costs speed.
        let _ = fcntl(&write, FcntlArg::F_SETPIPE_SZ(PIPE_SIZE));
        Ok(Pipe { read, write })
    }

    /// Returns an empty pipe to the pool.
    fn give_back(self) {
        POOL.with_borrow_mut(|pool| {
            if pool.len() < POOL_LIMIT {
                pool.push(self);
            }
        });
    }
}

const FLAGS: SpliceFFlags = SpliceFFlags::SPLICE_F_MOVE.union(SpliceFFlags::SPLICE_F_NONBLOCK);

/// What one readiness round moved.
#[derive(Debug)]
pub enum Moved {
    /// Bytes passed through; the source has no more for now.
    Bytes(u64),
    /// The source sent FIN (after any bytes counted before).
    Eof(u64),
}

/// Moves whatever `from` has queued into `to`, through a pooled pipe, and
/// waits for `to` to take it all. Call after `from` became readable.
pub async fn forward_ready(from: &OwnedReadHalf, to: &OwnedWriteHalf) -> io::Result<Moved> {
    let pipe = Pipe::take()?;
    let result = forward_with(from, to, &pipe).await;
    // A pipe with bytes left in it (an error mid-way) is not reusable.
    if result.is_ok() {
        pipe.give_back();
    }
    result
}

async fn forward_with(from: &OwnedReadHalf, to: &OwnedWriteHalf, pipe: &Pipe) -> io::Result<Moved> {
    let mut total = 0u64;
    loop {
        let read = from.as_ref().try_io(Interest::READABLE, || {
            splice_io(from.as_ref().as_fd(), pipe.write.as_fd())
        });
        let mut in_pipe = match read {
            Ok(0) => return Ok(Moved::Eof(total)),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Moved::Bytes(total)),
            Err(e) => return Err(e),
        };
        while in_pipe > 0 {
            to.writable().await?;
            let written = to.as_ref().try_io(Interest::WRITABLE, || {
                splice_io(pipe.read.as_fd(), to.as_ref().as_fd())
            });
            match written {
                Ok(n) => {
                    in_pipe -= n;
                    total += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

fn splice_io(
    from: std::os::fd::BorrowedFd<'_>,
    to: std::os::fd::BorrowedFd<'_>,
) -> io::Result<usize> {
    splice(from, None, to, None, PIPE_SIZE as usize, FLAGS).map_err(io::Error::from)
}
