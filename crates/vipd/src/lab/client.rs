//! The drill's load client, run on threads inside the first worker's
//! namespace:
//!
//! - a new connection every `every` (open loop: a slow or hanging attempt
//!   does not delay the next), each a whole request: TCP connect to VIP:port
//!   from the next of the worker's source addresses, TLS with the lab CA
//!   (server name `kubernetes`), `GET /readyz`; a success is a 200 within the
//!   timeouts. Every attempt is recorded with its start, duration, how long
//!   its TCP connect took, outcome and the plane that answered (the
//!   stand-in's `X-Lab-Node` header). The connect timeout leaves room for
//!   one SYN retransmission, as any real client's does (client-go waits
//!   30 s); a connect that needed one (1 s or more, Linux's initial RTO) is
//!   *slow*, and the drill counts it as a disruption, not a success;
//! - `streams` long-lived `GET /watch` streams opened at the start, each
//!   receiving a line every 100 ms; one is lost when it errors, ends, or
//!   stays silent for `stall`.
//!
//! It runs until told to stop and at most `limit` (bounded, lab-rules).
//!
//! Also here: [`VipWatch`], threads in each holder's namespace noting when
//! the VIP appears on or leaves its interfaces.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls_pki_types::ServerName;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio_rustls::TlsConnector;

use super::netns::Netns;

/// What the client does.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub target: SocketAddr,
    pub sources: Vec<IpAddr>,
    pub ca_file: PathBuf,
    pub every: Duration,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub streams: usize,
    pub stall: Duration,
    pub limit: Duration,
}

/// One request on a new connection.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    /// Start, ms since the scenario's epoch.
    pub at_ms: f64,
    pub took_ms: f64,
    /// How long the TCP connect took, when it completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_ms: Option<f64>,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plane: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A connect this slow needed a SYN retransmission (Linux's initial
/// retransmission timeout is 1 s, RFC 6298).
pub const SLOW_CONNECT_MS: f64 = 1000.0;

impl Attempt {
    /// A connect that needed a SYN retransmission.
    pub fn slow(&self) -> bool {
        self.connect_ms.is_some_and(|ms| ms >= SLOW_CONNECT_MS)
    }

    /// Served without a disruption: a success whose connect was not slow.
    pub fn served(&self) -> bool {
        self.ok && !self.slow()
    }
}

/// One long-lived stream.
#[derive(Debug, Clone, Serialize)]
pub struct StreamRecord {
    /// The plane whose apiserver serves it; None if it never opened.
    pub plane: Option<String>,
    pub lines: u64,
    /// When it was lost (ms since the epoch), if it was.
    pub lost_ms: Option<f64>,
    pub reason: Option<String>,
}

/// Everything the client saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClientLog {
    pub attempts: Vec<Attempt>,
    pub streams: Vec<StreamRecord>,
}

/// A running client.
#[derive(Debug)]
pub struct Client {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<std::io::Result<std::io::Result<ClientLog>>>,
}

fn ms(epoch: Instant, at: Instant) -> f64 {
    at.saturating_duration_since(epoch).as_secs_f64() * 1000.0
}

impl Client {
    /// Starts the client inside `worker`; times are ms since `epoch`.
    pub fn start(worker: &Netns, epoch: Instant, config: ClientConfig) -> std::io::Result<Self> {
        let tls = crate::health::tls::client_config(Some(&config.ca_file))
            .map_err(std::io::Error::other)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = worker.spawn_thread(move || -> std::io::Result<ClientLog> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            Ok(runtime.block_on(run(config, TlsConnector::from(tls), epoch, flag)))
        })?;
        Ok(Self { stop, thread })
    }

    /// Stops it and returns what it saw (attempts still running are
    /// waited for, up to their timeout).
    pub fn finish(self) -> std::io::Result<ClientLog> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.join() {
            Ok(result) => result?,
            Err(_) => Err(std::io::Error::other("the load client panicked")),
        }
    }
}

async fn run(
    config: ClientConfig,
    tls: TlsConnector,
    epoch: Instant,
    stop: Arc<AtomicBool>,
) -> ClientLog {
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let streams = Arc::new(Mutex::new(Vec::new()));
    let stream_stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + config.limit;
    let config = Arc::new(config);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..config.streams {
        let (config, tls, streams, stop) = (
            Arc::clone(&config),
            tls.clone(),
            Arc::clone(&streams),
            Arc::clone(&stream_stop),
        );
        let source = config.sources.get(i % config.sources.len().max(1)).copied();
        tasks.spawn(async move {
            let record = watch_stream(&config, &tls, source, epoch, &stop).await;
            if let Ok(mut s) = streams.lock() {
                s.push(record);
            }
        });
    }
    let mut ticker = tokio::time::interval(config.every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut next_source = 0usize;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        ticker.tick().await;
        let source = config
            .sources
            .get(next_source % config.sources.len().max(1))
            .copied();
        next_source = next_source.wrapping_add(1);
        let (config, tls, attempts) = (Arc::clone(&config), tls.clone(), Arc::clone(&attempts));
        tasks.spawn(async move {
            let started = Instant::now();
            let mut connected = None;
            let outcome = tokio::time::timeout(
                config.request_timeout,
                request(&config, &tls, source, "/readyz", &mut connected),
            )
            .await;
            let (ok, plane, error) = match outcome {
                Ok(Ok((200, plane))) => (true, plane, None),
                Ok(Ok((status, plane))) => (false, plane, Some(format!("HTTP {status}"))),
                Ok(Err(e)) => (false, None, Some(e)),
                Err(_) => (false, None, Some("request timed out".to_owned())),
            };
            let attempt = Attempt {
                at_ms: ms(epoch, started),
                took_ms: started.elapsed().as_secs_f64() * 1000.0,
                connect_ms: connected.map(|at: Instant| ms(started, at)),
                ok,
                plane,
                error,
            };
            if let Ok(mut a) = attempts.lock() {
                a.push(attempt);
            }
        });
        // Collect finished tasks as we go, so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    stream_stop.store(true, Ordering::Relaxed);
    // Bounded: every task ends within its timeout (streams within `stall`).
    let _ = tokio::time::timeout(
        config.request_timeout + config.stall + Duration::from_secs(1),
        async { while tasks.join_next().await.is_some() {} },
    )
    .await;
    tasks.abort_all();
    let mut attempts = attempts.lock().map(|a| a.clone()).unwrap_or_default();
    attempts.sort_by(|a, b| a.at_ms.total_cmp(&b.at_ms));
    let streams = streams.lock().map(|s| s.clone()).unwrap_or_default();
    ClientLog { attempts, streams }
}

/// One `GET /readyz` to `target` from inside `ns`, with the lab CA:
/// whether it answered 200 (within 2 s).
pub fn probe_once(ns: &Netns, target: SocketAddr, ca_file: &std::path::Path) -> bool {
    let Ok(tls) = crate::health::tls::client_config(Some(ca_file)) else {
        return false;
    };
    let config = ClientConfig {
        target,
        sources: Vec::new(),
        ca_file: ca_file.to_owned(),
        every: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(2),
        streams: 0,
        stall: Duration::from_secs(2),
        limit: Duration::from_secs(2),
    };
    ns.enter(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return false;
        };
        runtime.block_on(async {
            matches!(
                tokio::time::timeout(
                    config.request_timeout,
                    request(
                        &config,
                        &TlsConnector::from(tls),
                        None,
                        "/readyz",
                        &mut None
                    ),
                )
                .await,
                Ok(Ok((200, _)))
            )
        })
    })
    .unwrap_or(false)
}

/// TCP connect (noting when it completed in `connected`), then TLS.
async fn connect(
    config: &ClientConfig,
    tls: &TlsConnector,
    source: Option<IpAddr>,
    connected: &mut Option<Instant>,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let socket = match config.target {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|e| format!("socket: {e}"))?;
    if let Some(source) = source {
        socket
            .bind(SocketAddr::new(source, 0))
            .map_err(|e| format!("bind {source}: {e}"))?;
    }
    let tcp = tokio::time::timeout(config.connect_timeout, socket.connect(config.target))
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| format!("connect: {e}"))?;
    *connected = Some(Instant::now());
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from("kubernetes").map_err(|e| e.to_string())?;
    tls.connect(name, tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))
}

/// The status and the `X-Lab-Node` of a response head.
fn parse_head(head: &[u8]) -> (u16, Option<String>) {
    let text = String::from_utf8_lossy(head);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let plane = text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("x-lab-node")
            .then(|| v.trim().to_owned())
    });
    (status, plane)
}

async fn request(
    config: &ClientConfig,
    tls: &TlsConnector,
    source: Option<IpAddr>,
    path: &str,
    connected: &mut Option<Instant>,
) -> Result<(u16, Option<String>), String> {
    let mut stream = connect(config, tls, source, connected).await?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: kubernetes\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut response = Vec::new();
    let mut chunk = [0u8; 2048];
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 || response.len() > 64 * 1024 {
            break;
        }
        response.extend_from_slice(&chunk[..n]);
    }
    if response.is_empty() {
        return Err("closed without a response".to_owned());
    }
    Ok(parse_head(&response))
}

async fn watch_stream(
    config: &ClientConfig,
    tls: &TlsConnector,
    source: Option<IpAddr>,
    epoch: Instant,
    stop: &AtomicBool,
) -> StreamRecord {
    let mut record = StreamRecord {
        plane: None,
        lines: 0,
        lost_ms: None,
        reason: None,
    };
    let opened = tokio::time::timeout(config.request_timeout, async {
        let mut stream = connect(config, tls, source, &mut None).await?;
        stream
            .write_all(b"GET /watch HTTP/1.1\r\nHost: kubernetes\r\n\r\n")
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
            let n = stream
                .read(&mut byte)
                .await
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("closed before the response".to_owned());
            }
            head.push(byte[0]);
        }
        Ok::<_, String>((stream, parse_head(&head)))
    })
    .await;
    let mut stream = match opened {
        Ok(Ok((stream, (200, plane)))) => {
            record.plane = plane;
            stream
        }
        Ok(Ok((_, (status, _)))) => {
            record.reason = Some(format!("did not open: HTTP {status}"));
            return record;
        }
        Ok(Err(e)) => {
            record.reason = Some(format!("did not open: {e}"));
            return record;
        }
        Err(_) => {
            record.reason = Some("did not open: timed out".to_owned());
            return record;
        }
    };
    let mut buffer = [0u8; 1024];
    while !stop.load(Ordering::Relaxed) {
        // Short reads, so a stop is seen soon; silence is summed up.
        let mut silent = Duration::ZERO;
        let got = loop {
            let step = Duration::from_millis(200);
            match tokio::time::timeout(step, stream.read(&mut buffer)).await {
                Ok(result) => break Some(result),
                Err(_) => {
                    silent += step;
                    if silent >= config.stall {
                        break None;
                    }
                    if stop.load(Ordering::Relaxed) {
                        return record;
                    }
                }
            }
        };
        let silent = got.is_none();
        let lost = match got {
            Some(Ok(0)) => Some("closed".to_owned()),
            Some(Ok(n)) => {
                record.lines += buffer[..n].iter().filter(|&&b| b == b'\n').count() as u64;
                None
            }
            Some(Err(e)) => Some(format!("error: {e}")),
            None => Some(format!("silent for {} ms", config.stall.as_millis())),
        };
        if let Some(reason) = lost {
            // A silence is lost from its start.
            let at = if silent {
                Instant::now()
                    .checked_sub(config.stall)
                    .unwrap_or_else(Instant::now)
            } else {
                Instant::now()
            };
            record.lost_ms = Some(ms(epoch, at));
            record.reason = Some(reason);
            return record;
        }
    }
    record
}

/// A holder's watch thread: the changes it saw, (ms, holds the VIP).
type WatchThread = std::thread::JoinHandle<std::io::Result<Vec<(f64, bool)>>>;

/// Watches the VIP on each holder: a thread per holder, inside its
/// namespace, lists the addresses every `every` and notes each change.
#[derive(Debug)]
pub struct VipWatch {
    stop: Arc<AtomicBool>,
    threads: Vec<(String, WatchThread)>,
}

/// When the VIP was on one holder: (from ms, to ms).
pub type Spans = Vec<(f64, f64)>;

impl VipWatch {
    pub fn start(
        holders: &[(String, Netns)],
        vip: IpAddr,
        epoch: Instant,
        every: Duration,
        limit: Duration,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for (name, ns) in holders {
            let flag = Arc::clone(&stop);
            let thread = ns.spawn_thread(move || {
                let deadline = Instant::now() + limit;
                let mut changes = Vec::new();
                let mut last = None;
                while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let holds = has_address(vip);
                    if last != Some(holds) {
                        changes.push((ms(epoch, Instant::now()), holds));
                        last = Some(holds);
                    }
                    std::thread::sleep(every);
                }
                changes
            })?;
            threads.push((name.clone(), thread));
        }
        Ok(Self { stop, threads })
    }

    /// Stops watching; returns each holder's spans with the VIP, the last
    /// one closed at `end_ms`.
    pub fn finish(self, end_ms: f64) -> Vec<(String, Spans)> {
        self.stop.store(true, Ordering::Relaxed);
        self.threads
            .into_iter()
            .map(|(name, thread)| {
                let changes = thread.join().ok().and_then(|r| r.ok()).unwrap_or_default();
                let mut spans = Vec::new();
                let mut since = None;
                for (at, holds) in changes {
                    match (holds, since) {
                        (true, None) => since = Some(at),
                        (false, Some(from)) => {
                            spans.push((from, at));
                            since = None;
                        }
                        _ => {}
                    }
                }
                if let Some(from) = since {
                    spans.push((from, end_ms.max(from)));
                }
                (name, spans)
            })
            .collect()
    }
}

/// True when an interface of this thread's namespace has `vip`.
fn has_address(vip: IpAddr) -> bool {
    let Ok(addresses) = nix::ifaddrs::getifaddrs() else {
        return false;
    };
    addresses.into_iter().any(|a| {
        let Some(address) = a.address else {
            return false;
        };
        match vip {
            IpAddr::V4(v4) => address.as_sockaddr_in().is_some_and(|s| s.ip() == v4),
            IpAddr::V6(v6) => address.as_sockaddr_in6().is_some_and(|s| s.ip() == v6),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_heads_give_status_and_plane() {
        let (status, plane) =
            parse_head(b"HTTP/1.1 500 Internal Server Error\r\nX-Lab-Node: plane-2\r\n\r\n");
        assert_eq!(status, 500);
        assert_eq!(plane.as_deref(), Some("plane-2"));
        assert_eq!(parse_head(b"garbage"), (0, None));
    }
}
