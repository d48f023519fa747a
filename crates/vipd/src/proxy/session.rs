//! One client session: pick a backend that answers, then forward bytes both
//! ways until both sides are done.
//!
//! Half-close is kept: when one side sends FIN, the other side gets FIN and
//! the opposite direction goes on (`kubectl exec` sends stdin EOF and still
//! reads output). A buffer exists only while bytes flow: an idle session
//! (a watch waiting for events) holds two sockets and no buffer.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use socket2::{SockRef, TcpKeepalive};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tracing::debug;

use super::pool::{Backend, Pool};
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

/// Bytes read per wake-up at most: as much as a socket typically has queued.
const CHUNK: usize = 64 * 1024;

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
    let keepalive = TcpKeepalive::new()
        .with_time(Duration::from_secs(60))
        .with_interval(Duration::from_secs(10))
        .with_retries(6);
    socket.set_tcp_keepalive(&keepalive)
}

/// Connects to the first backend of the pool's order that accepts in time.
async fn connect(
    pool: &Pool,
    timeout: Duration,
) -> Result<(TcpStream, Arc<Backend>, usize), SessionError> {
    let candidates = pool.candidates();
    let tried = candidates.len();
    for (attempt, backend) in candidates.into_iter().enumerate() {
        let error = match tokio::time::timeout(timeout, TcpStream::connect(backend.address)).await {
            Ok(Ok(stream)) => return Ok((stream, backend, attempt)),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {timeout:?}"),
        };
        backend.connect_failures.fetch_add(1, Ordering::Relaxed);
        debug!(backend = %backend.name, address = %backend.address, %error, "connect failed, trying the next backend");
    }
    Err(SessionError::NoBackend { tried })
}

/// Serves one accepted client to the end.
pub async fn serve(
    client: TcpStream,
    client_address: SocketAddr,
    pool: &Pool,
    settings: &SessionSettings,
) -> Result<Finished, SessionError> {
    let (mut server, backend, retries) = connect(pool, settings.connect_timeout).await?;
    let _session = backend.open_session();
    // The client side inherited these from the listener (Linux copies
    // TCP_NODELAY and the keepalive settings to accepted sockets).
    tune(SockRef::from(&server))?;
    if settings.proxy_protocol {
        let local_address = client.local_addr()?;
        server
            .write_all(&proxy_protocol::header_v2(client_address, local_address))
            .await?;
    }
    let (to_backend, to_client) = if settings.close_sessions_on_down {
        let marked_down = backend.marked_down.notified();
        tokio::select! {
            result = forward(client, server, settings, &backend) => result?,
            () = marked_down => return Err(SessionError::BackendDown(backend.name.clone())),
        }
    } else {
        forward(client, server, settings, &backend).await?
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
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let direction = |from, to, counter| Direction {
        from,
        to,
        idle: settings.idle_timeout,
        splice: settings.splice,
        started,
        last_activity: &last_activity,
        counter,
    };
    let up = direction(client_read, server_write, &backend.bytes_to_backend).run();
    let down = direction(server_read, client_write, &backend.bytes_to_client).run();
    // An error on either side ends both: dropping the halves closes the sockets.
    Ok(tokio::try_join!(up, down)?)
}

/// One direction of a session.
struct Direction<'a> {
    from: OwnedReadHalf,
    to: OwnedWriteHalf,
    idle: Duration,
    splice: bool,
    started: Instant,
    last_activity: &'a AtomicU64,
    counter: &'a AtomicU64,
}

impl Direction<'_> {
    /// Forwards until EOF, then passes the FIN on and returns: the other
    /// direction keeps going.
    async fn run(mut self) -> Result<u64, SessionError> {
        let mut total = 0u64;
        // One timer for the session's life, re-armed only when it fires: a
        // timer per wake-up would cost a timer-wheel insert per request.
        let idle_timer = tokio::time::sleep(self.idle);
        tokio::pin!(idle_timer);
        loop {
            tokio::select! {
                biased;
                ready = self.from.readable() => ready?,
                () = &mut idle_timer => {
                    // Idle only if the other direction was quiet too.
                    let last = Duration::from_millis(self.last_activity.load(Ordering::Relaxed));
                    let quiet = self.started.elapsed().saturating_sub(last);
                    if quiet >= self.idle {
                        return Err(SessionError::Idle(self.idle));
                    }
                    idle_timer.as_mut().reset(tokio::time::Instant::now() + (self.idle - quiet));
                    continue;
                }
            }
            let (moved, eof) = if self.splice {
                match splice::forward_ready(&self.from, &self.to).await? {
                    Moved::Bytes(n) => (n, false),
                    Moved::Eof(n) => (n, true),
                }
            } else {
                self.copy_ready().await?
            };
            if moved > 0 {
                total += moved;
                self.counter.fetch_add(moved, Ordering::Relaxed);
                let now = self.started.elapsed().as_millis() as u64;
                self.last_activity.store(now, Ordering::Relaxed);
            }
            if eof {
                // Half-close: FIN onward; a peer that already left is fine.
                let _ = self.to.shutdown().await;
                return Ok(total);
            }
        }
    }

    /// The portable path: what is queued, through a buffer that exists only
    /// while bytes flow. Returns the bytes moved and whether EOF came.
    async fn copy_ready(&mut self) -> Result<(u64, bool), SessionError> {
        let mut buffer = Vec::with_capacity(CHUNK);
        let mut moved = 0u64;
        loop {
            buffer.clear();
            match self.from.try_read_buf(&mut buffer) {
                Ok(0) => return Ok((moved, true)),
                Ok(n) => {
                    self.to.write_all(&buffer).await?;
                    moved += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok((moved, false)),
                Err(e) => return Err(e.into()),
            }
        }
    }
}
