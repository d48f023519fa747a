//! One client session: pick a backend that answers, then forward bytes both
//! ways until both sides are done.
//!
//! Half-close is kept: when one side sends FIN, the other side gets FIN and
//! the opposite direction goes on (`kubectl exec` sends stdin EOF and still
//! reads output). A buffer exists only while bytes flow: an idle session
//! (a watch waiting for events) holds two sockets and no buffer.
//!
//! A session is one hand-written future ([`Pump`]): both directions and
//! one idle timer, polled together when the task wakes, with readiness
//! taken from the reactor's per-socket waker slots. It replaced a join of
//! two `select!` loops (two timers, and a readiness future queued and
//! unqueued per wake-up), whose bookkeeping was most of the user-space
//! time per request.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsFd;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};
use tokio::io::unix::AsyncFd;
use tokio::time::Sleep;
use tracing::debug;

use super::counter::Counter;
use super::pool::{Backend, Pool, SessionGuard};
use super::proxy_protocol;
use super::splice::Pipe;
use crate::sys;

/// A TCP socket registered with the worker's reactor. Sessions make their
/// own non-blocking calls on it and ask the reactor only for readiness:
/// per wake-up a direction costs its system calls and no future of its own.
pub type Stream = AsyncFd<std::net::TcpStream>;

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
) -> Result<(Stream, SessionGuard, usize), SessionError> {
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
async fn connect_to(address: SocketAddr) -> io::Result<Stream> {
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
    let stream = sys::register(std::net::TcpStream::from(socket))?;
    let ready = poll_fn(|cx| stream.poll_write_ready(cx)).await?.ready();
    if ready.is_write_closed() || !ready.is_writable() {
        return Err(stream
            .get_ref()
            .take_error()?
            .unwrap_or_else(|| io::Error::from(io::ErrorKind::ConnectionRefused)));
    }
    Ok(stream)
}

/// Serves one accepted client to the end.
pub async fn serve(
    client: Stream,
    client_address: SocketAddr,
    pool: &Pool,
    settings: &SessionSettings,
) -> Result<Finished, SessionError> {
    let (server, session, retries) = connect(pool, settings.connect_timeout).await?;
    let backend = session.backend();
    // The client side inherited TCP_NODELAY and keepalive from the
    // listener (Linux copies them to accepted sockets). The backend side
    // got TCP_NODELAY before its connect and gets keepalive if the session
    // lasts (KEEPALIVE_AFTER): one system call for a short session, not five.
    let header = if settings.proxy_protocol {
        let local_address = client.get_ref().local_addr()?;
        proxy_protocol::header_v2(client_address, local_address)
    } else {
        Vec::new()
    };
    let pump = forward(&client, &server, header, settings, backend);
    let (to_backend, to_client) = if settings.close_sessions_on_down {
        let marked_down = backend.marked_down.notified();
        tokio::select! {
            result = pump => result?,
            () = marked_down => return Err(SessionError::BackendDown(backend.name.clone())),
        }
    } else {
        pump.await?
    };
    Ok(Finished {
        backend: backend.name.clone(),
        to_backend,
        to_client,
        retries,
    })
}

/// Forwards both directions until both ended (the PROXY protocol `header`,
/// if any, goes to the backend first); returns the bytes each way.
async fn forward(
    client: &Stream,
    server: &Stream,
    header: Vec<u8>,
    settings: &SessionSettings,
    backend: &Backend,
) -> Result<(u64, u64), SessionError> {
    // One timer for the session's life, re-armed only when it fires: a
    // timer per wake-up would cost a timer-wheel insert per request.
    let timer = tokio::time::sleep(settings.idle_timeout.min(KEEPALIVE_AFTER));
    tokio::pin!(timer);
    let mut pump = Pump {
        up: Flow::new(header, &backend.bytes_to_backend),
        down: Flow::new(Vec::new(), &backend.bytes_to_client),
        splice: settings.splice,
        idle: settings.idle_timeout,
        last_activity: Instant::now(),
        keepalive_armed: false,
    };
    poll_fn(|cx| pump.poll(client, server, timer.as_mut(), cx)).await?;
    Ok((pump.up.total, pump.down.total))
}

/// A session's two directions and its idle timer.
struct Pump<'a> {
    /// Client to backend.
    up: Flow<'a>,
    /// Backend to client.
    down: Flow<'a>,
    splice: bool,
    idle: Duration,
    /// When a byte last moved either way.
    last_activity: Instant,
    /// The backend leg's keepalive is on (see [`KEEPALIVE_AFTER`]).
    keepalive_armed: bool,
}

impl Pump<'_> {
    /// Moves what both sides have queued; ready when both directions ended
    /// (closing the sockets then sends the last FIN), or with the error
    /// that ends the session (an error on either side ends both).
    fn poll(
        &mut self,
        client: &Stream,
        server: &Stream,
        mut timer: Pin<&mut Sleep>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), SessionError>> {
        let before = self.up.total + self.down.total;
        if self.up.poll(client, server, self.splice, cx)? && self.up.pass_on(&self.down, server) {
            return Poll::Ready(Ok(()));
        }
        if self.down.poll(server, client, self.splice, cx)? && self.down.pass_on(&self.up, client) {
            return Poll::Ready(Ok(()));
        }
        if self.up.total + self.down.total != before {
            self.last_activity = Instant::now();
        }
        while timer.as_mut().poll(cx).is_ready() {
            if !std::mem::replace(&mut self.keepalive_armed, true) {
                // A failure (the socket is closing) changes nothing.
                let _ = keepalive(SockRef::from(server.get_ref()));
            }
            // Idle only if both directions were quiet.
            let quiet = self.last_activity.elapsed();
            if quiet >= self.idle {
                return Poll::Ready(Err(SessionError::Idle(self.idle)));
            }
            timer
                .as_mut()
                .reset(tokio::time::Instant::now() + (self.idle - quiet));
        }
        Poll::Pending
    }
}

/// One direction of a session.
struct Flow<'a> {
    /// Bytes read and not yet written (the destination took only part of
    /// them, or the PROXY protocol header): written before reading again.
    held: Vec<u8>,
    /// How many of `held` are written.
    written: usize,
    /// The pipe of a bulk transfer, with `in_pipe` bytes in it.
    pipe: Option<Pipe>,
    in_pipe: usize,
    /// The last read filled the small buffer: bytes come in bulk, splice them.
    bulk: bool,
    /// Bytes spliced since the source was last found empty.
    round: usize,
    /// The source sent FIN; once `held` and the pipe are flushed, the
    /// direction has ended.
    eof: bool,
    /// The direction ended and its FIN was passed on to the destination.
    passed_on: bool,
    total: u64,
    /// The backend's byte counter for this direction (this worker's slot).
    counter: &'a Counter,
}

/// What one small read gave.
enum Step {
    /// Bytes; `drained`: fewer than asked, the source is empty.
    Read {
        n: usize,
        drained: bool,
    },
    Eof,
    /// Nothing queued (a stale readiness, now cleared).
    Empty,
}

impl<'a> Flow<'a> {
    fn new(held: Vec<u8>, counter: &'a Counter) -> Self {
        Self {
            held,
            written: 0,
            pipe: None,
            in_pipe: 0,
            bulk: false,
            round: 0,
            eof: false,
            passed_on: false,
            total: 0,
            counter,
        }
    }

    /// Moves what `from` has queued to `to` until one of them would block
    /// (its waker is then registered) or the direction ended: returns
    /// whether it has.
    ///
    /// Small messages (the common case: API requests and answers) go
    /// through a per-thread buffer, and a read that returns fewer bytes
    /// than asked ends the round: like a kernel TCP read, that means the
    /// queue is empty, so no further read is spent to learn it. Bulk (a
    /// read that fills the buffer) goes on with splice(2), when enabled,
    /// until the source is empty.
    fn poll(
        &mut self,
        from: &Stream,
        to: &Stream,
        splice: bool,
        cx: &mut Context<'_>,
    ) -> io::Result<bool> {
        loop {
            if self.flush(to, cx)?.is_pending() {
                return Ok(false);
            }
            if self.eof {
                return Ok(true);
            }
            let Poll::Ready(guard) = from.poll_read_ready(cx) else {
                return Ok(false);
            };
            let mut guard = guard?;
            // The peer's FIN already arrived (EPOLLRDHUP): once a read
            // drains the queue, no byte can follow.
            let closed = guard.ready().is_read_closed();
            if splice && self.bulk {
                let pipe = match self.pipe.take() {
                    Some(pipe) => pipe,
                    None => Pipe::take()?,
                };
                match guard.try_io(|socket| pipe.fill(socket.as_fd())) {
                    Ok(Ok(0)) => {
                        self.eof = true;
                        pipe.give_back();
                        continue;
                    }
                    Ok(Ok(n)) => {
                        self.in_pipe = n;
                        self.round += n;
                        self.moved(n);
                    }
                    Ok(Err(e)) => return Err(e),
                    Err(_would_block) => {
                        // Empty: back to plain reads unless this round
                        // was bulk. The pipe is empty (flushed above).
                        self.bulk = self.round >= SMALL;
                        self.round = 0;
                        pipe.give_back();
                        continue;
                    }
                }
                self.pipe = Some(pipe);
                continue;
            }
            let limit = if splice { SMALL } else { CHUNK };
            let step = BUFFER.with_borrow_mut(|buffer| {
                if buffer.len() < limit {
                    buffer.resize(limit, 0);
                }
                let buffer = &mut buffer[..limit];
                let n = match guard.try_io(|socket| sys::recv(socket.as_fd(), buffer)) {
                    Ok(n) => n?,
                    Err(_would_block) => return Ok(Step::Empty),
                };
                if n == 0 {
                    return Ok(Step::Eof);
                }
                let drained = n < limit;
                if drained {
                    // With edge-triggered epoll, bytes or a FIN that
                    // arrive later raise a new event, and a FIN already
                    // seen stays visible (tokio's own reads do the same).
                    guard.clear_ready();
                }
                let written = match sys::send(to.as_fd(), &buffer[..n]) {
                    Ok(written) => written,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                    Err(e) => return Err(e),
                };
                if written < n {
                    self.held.extend_from_slice(&buffer[written..n]);
                }
                Ok(Step::Read { n, drained })
            })?;
            match step {
                Step::Empty => {}
                Step::Eof => self.eof = true,
                Step::Read { n, drained } => {
                    self.moved(n);
                    if drained {
                        self.eof = closed;
                    } else if splice {
                        self.bulk = true;
                        self.round = n;
                    }
                }
            }
        }
    }

    /// Called when this direction has ended: whether the session is over
    /// (the other direction ended before); if not, passes the FIN on, once.
    fn pass_on(&mut self, other: &Flow<'_>, to: &Stream) -> bool {
        if other.passed_on {
            return true;
        }
        if !std::mem::replace(&mut self.passed_on, true) {
            // Half-close: FIN onward; a peer that already left is fine.
            let _ = to.get_ref().shutdown(Shutdown::Write);
        }
        false
    }

    /// Writes what the direction holds (bytes or a pipe's contents);
    /// pending while the destination cannot take them.
    fn flush(&mut self, to: &Stream, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.held.len() || self.in_pipe > 0 {
            let mut guard = ready!(to.poll_write_ready(cx))?;
            let result = guard.try_io(|socket| match &self.pipe {
                Some(pipe) if self.in_pipe > 0 => pipe.drain(socket.as_fd()),
                _ => sys::send(socket.as_fd(), &self.held[self.written..]),
            });
            match result {
                Ok(Ok(n)) if self.in_pipe > 0 => self.in_pipe -= n,
                Ok(Ok(n)) => self.written += n,
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => {}
            }
        }
        if !self.held.is_empty() {
            // An idle session holds no buffer.
            self.held = Vec::new();
            self.written = 0;
        }
        Poll::Ready(Ok(()))
    }

    fn moved(&mut self, n: usize) {
        self.total += n as u64;
        self.counter.add(n as u64);
    }
}

thread_local! {
    // Per worker thread, and borrowed only within one poll: an idle
    // session holds no buffer.
    static BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}
