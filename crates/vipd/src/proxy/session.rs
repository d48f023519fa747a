//! One client session: pick a backend that answers, then forward bytes both
//! ways until both sides are done.
//!
//! Half-close is kept: when one side sends FIN, the other side gets FIN and
//! the opposite direction goes on (`kubectl exec` sends stdin EOF and still
//! reads output). A buffer exists only while bytes flow: an idle session
//! (a watch waiting for events) holds two sockets and no buffer.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, recv};
use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tracing::debug;

use super::counter::Counter;
use super::pool::{Backend, Pool, SessionGuard};
use super::proxy_protocol;
use super::splice::{self, Moved};

/// What every session of a frontend shares.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    pub proxy_protocol: bool,
    pub close_sessions_on_down: bool,
    /// Forward with splice(2) instead of copying through user space.
    pub splice: bool,
}

/// Bytes read per system call at most without splice.
const CHUNK: usize = 64 * 1024;
/// With splice on, reads of up to this size go through a buffer; one that
/// fills it switches the direction to splice (bulk).
const SMALL: usize = 16 * 1024;
/// The backend leg turns keepalive on only once the session has lived this
/// long (four system calls that a short session does not need). The client
/// leg has it from the listener.
const KEEPALIVE_AFTER: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("no backend accepted the connection ({tried} tried)")]
    NoBackend { tried: usize },
    #[error("backend {0} marked down: session closed")]
    BackendDown(String),
    #[error("idle for {0:?}: session closed")]
    Idle(Duration),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub backend: String,
    pub to_backend: u64,
    pub to_client: u64,
    /// Backends that failed to accept before this one did.
    pub retries: usize,
}

/// TCP_NODELAY and TCP keepalive on both legs: a peer that vanished (power loss, a dead
/// WireGuard tunnel) is noticed within minutes instead of holding the
/// session for the whole idle timeout.
pub fn tune(socket: SockRef<'_>) -> io::Result<()> {
    socket.set_tcp_nodelay(true)?;
    keepalive(socket)
}

/// TCP keepalive: first probe after 60 s of silence, then every 10 s, 6 tries.
pub fn keepalive(socket: SockRef<'_>) -> io::Result<()> {
    let keepalive = TcpKeepalive::new()
        .with_time(Duration::from_secs(60))
        .with_interval(Duration::from_secs(10))
        .with_retries(6);
    socket.set_tcp_keepalive(&keepalive)
}

/// Connects to the first backend of the pool's order that accepts in time.
/// The guard holds the backend (and counts the session on it).
async fn connect(
    pool: &Pool,
    timeout: Duration,
) -> Result<(TcpStream, SessionGuard, usize), SessionError> {
    let candidates = pool.candidates();
    let tried = candidates.len();
    for (attempt, backend) in candidates.iter().enumerate() {
        let pending = backend.begin_connect();
        let error = match tokio::time::timeout(timeout, connect_to(backend.address)).await {
            Ok(Ok(stream)) => {
                pending.established();
                return Ok((stream, pending, attempt));
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {timeout:?}"),
        };
        backend.connect_failures.inc();
        debug!(backend = %backend.name, address = %backend.address, %error, "connect failed, trying the next backend");
    }
    Err(SessionError::NoBackend { tried })
}

/// A connection to `address` with TCP_NODELAY. The outcome of the
/// non-blocking connect is read from the readiness epoll reports (a failed
/// connect raises EPOLLERR/EPOLLHUP), so a connect that succeeds costs no
/// `getsockopt(SO_ERROR)`.
async fn connect_to(address: SocketAddr) -> io::Result<TcpStream> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM.nonblocking(),
        Some(Protocol::TCP),
    )?;
    socket.set_tcp_nodelay(true)?;
    match socket.connect(&address.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(Errno::EINPROGRESS as i32) => {}
        Err(e) => return Err(e),
    }
    let stream = TcpStream::from_std(std::net::TcpStream::from(socket))?;
    let ready = stream.ready(Interest::WRITABLE).await?;
    if ready.is_write_closed() || !ready.is_writable() {
        return Err(stream
            .take_error()?
            .unwrap_or_else(|| io::Error::from(io::ErrorKind::ConnectionRefused)));
    }
    Ok(stream)
}

/// Serves one accepted client to the end.
pub async fn serve(
    client: TcpStream,
    client_address: SocketAddr,
    pool: &Pool,
    settings: &SessionSettings,
) -> Result<Finished, SessionError> {
    let (mut server, session, retries) = connect(pool, settings.connect_timeout).await?;
    let backend = session.backend();
    // The client side inherited TCP_NODELAY and keepalive from the
    // listener (Linux copies them to accepted sockets). The backend side
    // got TCP_NODELAY before its connect and gets keepalive if the session
    // lasts (KEEPALIVE_AFTER): one system call for a short session, not five.
    if settings.proxy_protocol {
        let local_address = client.local_addr()?;
        server
            .write_all(&proxy_protocol::header_v2(client_address, local_address))
            .await?;
    }
    let (to_backend, to_client) = if settings.close_sessions_on_down {
        let marked_down = backend.marked_down.notified();
        tokio::select! {
            result = forward(client, server, settings, backend) => result?,
            () = marked_down => return Err(SessionError::BackendDown(backend.name.clone())),
        }
    } else {
        forward(client, server, settings, backend).await?
    };
    Ok(Finished {
        backend: backend.name.clone(),
        to_backend,
        to_client,
        retries,
    })
}

/// Forwards both directions until both ended; returns the bytes each way.
async fn forward(
    client: TcpStream,
    server: TcpStream,
    settings: &SessionSettings,
    backend: &Backend,
) -> Result<(u64, u64), SessionError> {
    let started = Instant::now();
    let last_activity = AtomicU64::new(0);
    let one_done = AtomicBool::new(false);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let direction = |from, to, counter, to_backend| Direction {
        from,
        to,
        idle: settings.idle_timeout,
        splice: settings.splice,
        bulk: false,
        arm_keepalive: to_backend,
        started,
        last_activity: &last_activity,
        one_done: &one_done,
        counter,
    };
    let up = direction(client_read, server_write, &backend.bytes_to_backend, true).run();
    let down = direction(server_read, client_write, &backend.bytes_to_client, false).run();
    // An error on either side ends both: dropping the halves closes the sockets.
    Ok(tokio::try_join!(up, down)?)
}

/// One direction of a session.
struct Direction<'a> {
    from: OwnedReadHalf,
    to: OwnedWriteHalf,
    idle: Duration,
    splice: bool,
    /// The last read filled the small buffer: bytes come in bulk, splice them.
    bulk: bool,
    /// This direction writes to the backend and still has to turn its
    /// keepalive on (see [`KEEPALIVE_AFTER`]).
    arm_keepalive: bool,
    started: Instant,
    last_activity: &'a AtomicU64,
    /// Set by the first direction to end; the second one then closes
    /// instead of shutting down.
    one_done: &'a AtomicBool,
    /// The backend's byte counter for this direction (this worker's slot).
    counter: &'a Counter,
}

/// What one read from the source gave.
enum Read {
    /// Bytes, all sent on; `drained`: fewer than asked, the source is empty.
    Sent {
        moved: u64,
        drained: bool,
    },
    /// Bytes of which the destination took only the first part: the rest
    /// must be written before reading again.
    Partly {
        moved: u64,
        rest: Vec<u8>,
        drained: bool,
    },
    Eof,
    /// Nothing queued (a stale readiness).
    Nothing,
}

impl Direction<'_> {
    /// Forwards until EOF, then passes the FIN on and returns: the other
    /// direction keeps going.
    async fn run(mut self) -> Result<u64, SessionError> {
        let mut total = 0u64;
        // One timer for the session's life, re-armed only when it fires: a
        // timer per wake-up would cost a timer-wheel insert per request.
        let first = if self.arm_keepalive {
            self.idle.min(KEEPALIVE_AFTER)
        } else {
            self.idle
        };
        let idle_timer = tokio::time::sleep(first);
        tokio::pin!(idle_timer);
        loop {
            let closed = tokio::select! {
                biased;
                // The peer's FIN already arrived (EPOLLRDHUP): once a read
                // drains the queue, no byte can follow.
                ready = self.from.as_ref().ready(Interest::READABLE) => ready?.is_read_closed(),
                () = &mut idle_timer => {
                    if std::mem::take(&mut self.arm_keepalive) {
                        // A failure (the socket is closing) changes nothing.
                        let _ = keepalive(SockRef::from(self.to.as_ref()));
                    }
                    // Idle only if the other direction was quiet too.
                    let last = Duration::from_millis(self.last_activity.load(Ordering::Relaxed));
                    let quiet = self.started.elapsed().saturating_sub(last);
                    if quiet >= self.idle {
                        return Err(SessionError::Idle(self.idle));
                    }
                    idle_timer.as_mut().reset(tokio::time::Instant::now() + (self.idle - quiet));
                    continue;
                }
            };
            let (moved, eof) = self.forward_ready(closed).await?;
            if moved > 0 {
                total += moved;
                self.counter.add(moved);
                let now = self.started.elapsed().as_millis() as u64;
                self.last_activity.store(now, Ordering::Relaxed);
            }
            if eof {
                if self.one_done.swap(true, Ordering::AcqRel) {
                    // Both directions are done: closing the sockets (when
                    // the session ends) sends the FIN, with no shutdown
                    // (dropping a tokio write half would shut it down).
                    self.to.forget();
                    return Ok(total);
                }
                // Half-close: FIN onward; a peer that already left is fine.
                let _ = self.to.shutdown().await;
                return Ok(total);
            }
        }
    }

    /// Moves what the source has queued. Small messages (the common case:
    /// API requests and answers) go through a per-thread buffer, and a read
    /// that returns fewer bytes than asked ends the round: like a kernel
    /// TCP read, that means the queue is empty, so no further read is spent
    /// to learn it. Bulk (a read that fills the buffer) goes on with
    /// splice(2), when enabled, until the source is empty. Returns the bytes
    /// moved and whether EOF came.
    ///
    /// `closed`: the source's FIN had arrived before this round, so a read
    /// that drains it is followed by EOF, without a read that returns 0.
    async fn forward_ready(&mut self, closed: bool) -> Result<(u64, bool), SessionError> {
        if self.splice && self.bulk {
            return Ok(match splice::forward_ready(&self.from, &self.to).await? {
                Moved::Bytes(n) => {
                    // Small again: back to plain reads.
                    self.bulk = n >= SMALL as u64;
                    (n, false)
                }
                Moved::Eof(n) => (n, true),
            });
        }
        let limit = if self.splice { SMALL } else { CHUNK };
        let mut total = 0u64;
        loop {
            let (moved, drained) = match read_and_send(&self.from, &self.to, limit)? {
                Read::Eof => return Ok((total, true)),
                Read::Nothing => return Ok((total, false)),
                Read::Sent { moved, drained } => (moved, drained),
                Read::Partly {
                    moved,
                    rest,
                    drained,
                } => {
                    self.to.write_all(&rest).await?;
                    (moved, drained)
                }
            };
            total += moved;
            if drained {
                return Ok((total, closed));
            }
            if self.splice {
                self.bulk = true;
                return Ok(match splice::forward_ready(&self.from, &self.to).await? {
                    Moved::Bytes(n) => (total + n, false),
                    Moved::Eof(n) => (total + n, true),
                });
            }
        }
    }
}

thread_local! {
    // Per worker thread, and borrowed only between two awaits: an idle
    // session holds no buffer.
    static BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// One read of at most `limit` bytes from `from` and one non-blocking write
/// of them to `to`. A short read clears the source's readiness (tokio's
/// own reads do the same): with edge-triggered epoll, bytes or a FIN that
/// arrive later raise a new event, and a FIN already seen stays visible.
fn read_and_send(from: &OwnedReadHalf, to: &OwnedWriteHalf, limit: usize) -> io::Result<Read> {
    BUFFER.with_borrow_mut(|buffer| {
        if buffer.len() < limit {
            buffer.resize(limit, 0);
        }
        let buffer = &mut buffer[..limit];
        let fd = from.as_ref().as_raw_fd();
        let mut short = None;
        let read = from.as_ref().try_io(Interest::READABLE, || {
            let n = loop {
                match recv(fd, buffer, MsgFlags::empty()) {
                    Err(Errno::EINTR) => continue,
                    other => break other?,
                }
            };
            if n > 0 && n < limit {
                // Report "would block" so tokio clears the readiness; the
                // count travels beside it.
                short = Some(n);
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(n)
        });
        let (n, drained) = match (read, short) {
            (_, Some(n)) => (n, true),
            (Ok(0), None) => return Ok(Read::Eof),
            (Ok(n), None) => (n, false),
            (Err(e), None) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Read::Nothing),
            (Err(e), None) => return Err(e),
        };
        let written = match to.try_write(&buffer[..n]) {
            Ok(written) => written,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => return Err(e),
        };
        let moved = n as u64;
        Ok(if written == n {
            Read::Sent { moved, drained }
        } else {
            Read::Partly {
                moved,
                rest: buffer[written..n].to_vec(),
                drained,
            }
        })
    })
}
