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

/// What every session of a frontend shares.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    pub proxy_protocol: bool,
    pub close_sessions_on_down: bool,
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

/// TCP keepalive on both legs: a peer that vanished (power loss, a dead
/// WireGuard tunnel) is noticed within minutes instead of holding the
/// session for the whole idle timeout.
fn tune(stream: &TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let keepalive = TcpKeepalive::new()
        .with_time(Duration::from_secs(60))
        .with_interval(Duration::from_secs(10))
        .with_retries(6);
    SockRef::from(stream).set_tcp_keepalive(&keepalive)
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
    let local_address = client.local_addr()?;
    let (mut server, backend, retries) = connect(pool, settings.connect_timeout).await?;
    let _session = backend.open_session();
    tune(&client)?;
    tune(&server)?;
    if settings.proxy_protocol {
        server
            .write_all(&proxy_protocol::header_v2(client_address, local_address))
            .await?;
    }
    let (to_backend, to_client) = if settings.close_sessions_on_down {
        let marked_down = backend.marked_down.notified();
        tokio::select! {
            result = forward(client, server, settings.idle_timeout, &backend) => result?,
            () = marked_down => return Err(SessionError::BackendDown(backend.name.clone())),
        }
    } else {
        forward(client, server, settings.idle_timeout, &backend).await?
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
    idle: Duration,
    backend: &Backend,
) -> Result<(u64, u64), SessionError> {
    let started = Instant::now();
    let last_activity = AtomicU64::new(0);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let up = pipe(
        client_read,
        server_write,
        idle,
        started,
        &last_activity,
        &backend.bytes_to_backend,
    );
    let down = pipe(
        server_read,
        client_write,
        idle,
        started,
        &last_activity,
        &backend.bytes_to_client,
    );
    // An error on either side ends both: dropping the halves closes the sockets.
    Ok(tokio::try_join!(up, down)?)
}

/// One direction. On EOF, passes the FIN on and returns: the other
/// direction keeps going.
async fn pipe(
    from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    idle: Duration,
    started: Instant,
    last_activity: &AtomicU64,
    counter: &AtomicU64,
) -> Result<u64, SessionError> {
    let mut total = 0u64;
    loop {
        match tokio::time::timeout(idle, from.readable()).await {
            Ok(ready) => ready?,
            Err(_) => {
                // Idle only if the other direction was quiet too.
                let last = Duration::from_millis(last_activity.load(Ordering::Relaxed));
                if started.elapsed().saturating_sub(last) >= idle {
                    return Err(SessionError::Idle(idle));
                }
                continue;
            }
        }
        let mut buffer = Vec::with_capacity(CHUNK);
        loop {
            buffer.clear();
            match from.try_read_buf(&mut buffer) {
                Ok(0) => {
                    // Half-close: FIN onward; a peer that already left is fine.
                    let _ = to.shutdown().await;
                    return Ok(total);
                }
                Ok(n) => {
                    to.write_all(&buffer).await?;
                    total += n as u64;
                    counter.fetch_add(n as u64, Ordering::Relaxed);
                    let now = started.elapsed().as_millis() as u64;
                    last_activity.store(now, Ordering::Relaxed);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e.into()),
            }
        }
    }
}
