//! The L4 proxy on real sockets (loopback): forwarding, half-close, retries,
//! health, fail-open, the connection limit, drain and the PROXY header.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use vipd::config::resolve::{Backend, Frontend, HealthCheck};
use vipd::config::spec::{Balance, CheckKind, ProxySection};
use vipd::config::values::Interval;
use vipd::proxy::frontend;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const BOUND: Duration = Duration::from_secs(10);

fn tcp_check(interval_ms: u64) -> HealthCheck {
    HealthCheck {
        kind: CheckKind::Tcp,
        path: None,
        interval: Interval::from_millis(interval_ms),
        timeout: Interval::from_millis(interval_ms.min(200)),
        rise: 1,
        fall: 1,
        ca_file: None,
        insecure_skip_verify: false,
        server_name: None,
    }
}

/// A backend that answers every connection with its name, then echoes.
struct EchoBackend {
    address: SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl EchoBackend {
    async fn start(name: &'static str) -> Self {
        // A backlog that holds a burst of a thousand connects (`bind`'s
        // 128 overflows when this task accepts late, and the kernel then
        // drops SYNs: connects that time out, a test of the backlog).
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(LOCALHOST, 0)).unwrap();
        Self::start_on(name, socket.listen(2048).unwrap())
    }

    fn start_on(name: &'static str, listener: TcpListener) -> Self {
        let address = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                count.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    if stream.write_all(name.as_bytes()).await.is_err() {
                        return;
                    }
                    let (mut r, mut w) = stream.split();
                    // Echo, then pass the FIN on: half-close both ways.
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                    let _ = w.shutdown().await;
                });
            }
        });
        Self {
            address,
            accepted,
            task,
        }
    }

    fn stop(&self) {
        self.task.abort();
    }
}

struct Proxy {
    address: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<()>>,
}

async fn proxy(
    backends: &[(&str, SocketAddr, bool)],
    settings: ProxySection,
    check_ms: u64,
) -> Proxy {
    let plan = Frontend {
        name: "test",
        listen: SocketAddr::new(LOCALHOST, 0),
        backends: backends
            .iter()
            .map(|&(name, address, local)| Backend {
                node: name.to_owned(),
                address,
                local,
                check: tcp_check(check_ms),
            })
            .collect(),
    };
    let listener = frontend::bind(plan.listen, 1024, false).unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        let balance = settings.balance;
        frontend::run(plan, listener, &settings, balance, stop_rx).await
    });
    Proxy {
        address,
        stop,
        task,
    }
}

fn settings() -> ProxySection {
    ProxySection {
        connect_timeout: Interval::from_millis(300),
        drain_timeout: Interval::from_secs(5),
        ..ProxySection::default()
    }
}

/// Accepts until a connection starts with `first`: the health checker also
/// connects to a backend (and leaves at once), so the first accept may be its.
async fn accept_proxied(listener: &TcpListener, first: &[u8]) -> TcpStream {
    loop {
        let (mut stream, _) = tokio::time::timeout(BOUND, listener.accept())
            .await
            .unwrap()
            .unwrap();
        let mut buffer = vec![0u8; first.len()];
        if let Ok(Ok(_)) = tokio::time::timeout(BOUND, stream.read_exact(&mut buffer)).await
            && buffer == first
        {
            return stream;
        }
    }
}

/// Connects through the proxy and returns the stream and the backend's name.
async fn hello(proxy: SocketAddr) -> (TcpStream, String) {
    let mut stream = tokio::time::timeout(BOUND, TcpStream::connect(proxy))
        .await
        .unwrap()
        .unwrap();
    let mut name = [0u8; 2];
    tokio::time::timeout(BOUND, stream.read_exact(&mut name))
        .await
        .unwrap()
        .unwrap();
    (stream, String::from_utf8_lossy(&name).into_owned())
}

#[tokio::test]
async fn round_robin_spreads_and_echo_round_trips() {
    let a = EchoBackend::start("b1").await;
    let b = EchoBackend::start("b2").await;
    let settings = ProxySection {
        balance: Balance::RoundRobin,
        ..settings()
    };
    let p = proxy(
        &[("b1", a.address, false), ("b2", b.address, false)],
        settings,
        1000,
    )
    .await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        let (mut s, name) = hello(p.address).await;
        s.write_all(b"ping").await.unwrap();
        let mut echo = [0u8; 4];
        s.read_exact(&mut echo).await.unwrap();
        assert_eq!(&echo, b"ping");
        seen.push(name);
    }
    assert_eq!(seen.iter().filter(|n| *n == "b1").count(), 2, "{seen:?}");
    assert_eq!(seen.iter().filter(|n| *n == "b2").count(), 2, "{seen:?}");
}

#[tokio::test]
async fn half_close_works_in_both_directions_with_splice() {
    half_close_in_both_directions(true).await;
}

#[tokio::test]
async fn half_close_works_in_both_directions_with_copy() {
    half_close_in_both_directions(false).await;
}

async fn half_close_in_both_directions(splice: bool) {
    let backend = EchoBackend::start("b1").await;
    let settings = || ProxySection {
        splice,
        ..settings()
    };
    let p = proxy(&[("b1", backend.address, false)], settings(), 1000).await;
    // Client closes its sending side first, then still reads the echo.
    let (mut s, _) = hello(p.address).await;
    s.write_all(b"last words").await.unwrap();
    s.shutdown().await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(BOUND, s.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        rest, b"last words",
        "the echo arrives after our FIN, then the backend's FIN"
    );

    // The backend closes its sending side first; the client can still send.
    let server = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let server_address = server.local_addr().unwrap();
    let p2 = proxy(&[("b2", server_address, false)], settings(), 1000).await;
    let backend_side = tokio::spawn(async move {
        let mut stream = accept_proxied(&server, b"?").await;
        stream.write_all(b"b2bye").await.unwrap();
        stream.shutdown().await.unwrap();
        let mut got = Vec::new();
        stream.read_to_end(&mut got).await.unwrap();
        got
    });
    let mut client = TcpStream::connect(p2.address).await.unwrap();
    client.write_all(b"?").await.unwrap();
    let mut greeting = Vec::new();
    tokio::time::timeout(BOUND, client.read_to_end(&mut greeting))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(greeting, b"b2bye");
    client.write_all(b"still talking").await.unwrap();
    client.shutdown().await.unwrap();
    let got = tokio::time::timeout(BOUND, backend_side)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, b"still talking");
}

#[tokio::test]
async fn a_refused_or_silent_backend_is_skipped_for_the_next() {
    let good = EchoBackend::start("ok").await;
    // A port with nothing on it: connection refused.
    let closed = TcpListener::bind((LOCALHOST, 0))
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    // A listener whose accept queue is full and never drained: SYNs go
    // unanswered, so the connect times out.
    let silent = std::net::TcpListener::bind((LOCALHOST, 0)).unwrap();
    let silent_address = silent.local_addr().unwrap();
    let socket = socket2::Socket::from(silent);
    socket.listen(0).unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(s)) = tokio::time::timeout(
            Duration::from_millis(200),
            TcpStream::connect(silent_address),
        )
        .await
        {
            fillers.push(s);
        }
    }
    let settings = ProxySection {
        balance: Balance::RoundRobin,
        ..settings()
    };
    // Health checks rarely run here (10 s), so only the connect retries act.
    let p = proxy(
        &[
            ("closed", closed, false),
            ("silent", silent_address, false),
            ("ok", good.address, false),
        ],
        settings,
        10_000,
    )
    .await;
    for _ in 0..3 {
        let (_, name) = hello(p.address).await;
        assert_eq!(name, "ok");
    }
    drop(socket);
}

#[tokio::test]
async fn a_backend_marked_down_gets_no_new_sessions_and_comes_back() {
    let a = EchoBackend::start("b1").await;
    let b = EchoBackend::start("b2").await;
    let settings = ProxySection {
        balance: Balance::RoundRobin,
        ..settings()
    };
    let p = proxy(
        &[("b1", a.address, false), ("b2", b.address, false)],
        settings,
        50,
    )
    .await;
    // b1 goes away; its listener is closed so checks fail.
    a.stop();
    tokio::time::sleep(Duration::from_millis(400)).await;
    for _ in 0..6 {
        let (_, name) = hello(p.address).await;
        assert_eq!(name, "b2");
    }
    // b1 returns on the same port.
    let listener = TcpListener::bind(a.address).await.unwrap();
    let a2 = EchoBackend::start_on("b1", listener);
    let back = async {
        loop {
            let (_, name) = hello(p.address).await;
            if name == "b1" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(BOUND, back)
        .await
        .expect("b1 back in rotation");
    assert!(a2.accepted.load(Ordering::Relaxed) >= 1);
}

#[tokio::test]
async fn all_backends_marked_down_fails_open() {
    // Health checks point at ports that refuse; the backends themselves
    // are reached through the proxy anyway, since nothing better exists.
    let a = EchoBackend::start("b1").await;
    let plan_backends = [("b1", a.address, false)];
    let settings = settings();
    let plan = Frontend {
        name: "test",
        listen: SocketAddr::new(LOCALHOST, 0),
        backends: plan_backends
            .iter()
            .map(|&(name, address, local)| Backend {
                node: name.to_owned(),
                address,
                local,
                check: HealthCheck {
                    kind: CheckKind::Https,
                    path: Some("/readyz".into()),
                    insecure_skip_verify: true,
                    ..tcp_check(50)
                },
            })
            .collect(),
    };
    let listener = frontend::bind(plan.listen, 128, false).unwrap();
    let address = listener.local_addr().unwrap();
    let (_stop, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        frontend::run(plan, listener, &settings, Balance::LocalFirst, stop_rx).await
    });
    // The HTTPS check fails against a plain TCP echo: the backend is down.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (_, name) = hello(address).await;
    assert_eq!(name, "b1");
}

#[tokio::test]
async fn local_first_prefers_the_local_apiserver() {
    let remote = EchoBackend::start("rm").await;
    let local = EchoBackend::start("lc").await;
    let p = proxy(
        &[("rm", remote.address, false), ("lc", local.address, true)],
        settings(),
        50,
    )
    .await;
    for _ in 0..5 {
        let (_, name) = hello(p.address).await;
        assert_eq!(name, "lc");
    }
    local.stop();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (_, name) = hello(p.address).await;
    assert_eq!(name, "rm", "the others only when the local one is down");
}

#[tokio::test]
async fn the_connection_limit_queues_instead_of_refusing() {
    let backend = EchoBackend::start("b1").await;
    let settings = ProxySection {
        max_connections: 2,
        ..settings()
    };
    let p = proxy(&[("b1", backend.address, false)], settings, 1000).await;
    let (first, _) = hello(p.address).await;
    let (_second, _) = hello(p.address).await;
    // The third connects (the kernel queues it) but is not served yet.
    let mut third = TcpStream::connect(p.address).await.unwrap();
    let mut name = [0u8; 2];
    let early = tokio::time::timeout(Duration::from_millis(300), third.read_exact(&mut name)).await;
    assert!(early.is_err(), "served beyond the limit");
    drop(first);
    tokio::time::timeout(BOUND, third.read_exact(&mut name))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&name, b"b1");
}

#[tokio::test]
async fn stop_drains_established_sessions_and_refuses_new_ones() {
    let backend = EchoBackend::start("b1").await;
    let p = proxy(&[("b1", backend.address, false)], settings(), 1000).await;
    let (mut open, _) = hello(p.address).await;
    p.stop.send_replace(true);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        TcpStream::connect(p.address).await.is_err(),
        "the listener is closed"
    );
    // The established session still works during the drain.
    open.write_all(b"during drain").await.unwrap();
    let mut echo = [0u8; 12];
    open.read_exact(&mut echo).await.unwrap();
    assert_eq!(&echo, b"during drain");
    assert!(!p.task.is_finished(), "still draining");
    drop(open);
    tokio::time::timeout(BOUND, p.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn the_proxy_protocol_header_tells_the_backend_who_called() {
    let server = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let server_address = server.local_addr().unwrap();
    let settings = ProxySection {
        proxy_protocol: true,
        ..settings()
    };
    let p = proxy(&[("b1", server_address, false)], settings, 10_000).await;
    let mut client = TcpStream::connect(p.address).await.unwrap();
    let client_address = client.local_addr().unwrap();
    client.write_all(b"hi").await.unwrap();
    let (mut stream, _) = server.accept().await.unwrap();
    let mut header = [0u8; 30];
    stream.read_exact(&mut header).await.unwrap();
    assert_eq!(&header[..12], &vipd::proxy::proxy_protocol::SIGNATURE);
    assert_eq!(&header[16..20], &[127, 0, 0, 1]);
    assert_eq!(
        u16::from_be_bytes([header[24], header[25]]),
        client_address.port()
    );
    assert_eq!(
        u16::from_be_bytes([header[26], header[27]]),
        p.address.port()
    );
    assert_eq!(&header[28..30], b"hi");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_clients() {
    let a = EchoBackend::start("b1").await;
    let b = EchoBackend::start("b2").await;
    let p = proxy(
        &[("b1", a.address, false), ("b2", b.address, false)],
        settings(),
        1000,
    )
    .await;
    let mut clients = Vec::new();
    for i in 0..1000u32 {
        let address = p.address;
        clients.push(tokio::spawn(async move {
            let (mut s, _) = hello(address).await;
            let message = i.to_be_bytes();
            s.write_all(&message).await.unwrap();
            let mut echo = [0u8; 4];
            s.read_exact(&mut echo).await.unwrap();
            assert_eq!(echo, message);
            s
        }));
    }
    let mut open = Vec::new();
    for client in clients {
        open.push(tokio::time::timeout(BOUND, client).await.unwrap().unwrap());
    }
    assert_eq!(open.len(), 1000, "all 1000 held open at once");
    // Every client reached a backend (health-check connections come on top).
    assert!(a.accepted.load(Ordering::Relaxed) + b.accepted.load(Ordering::Relaxed) >= 1000);
    assert!(
        a.accepted.load(Ordering::Relaxed) > 100 && b.accepted.load(Ordering::Relaxed) > 100,
        "both backends share the load"
    );
}

/// Streams 2 GiB through the proxy and back, comparing checksums.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gib_arrive_intact_with_splice() {
    bulk_round_trip(2 << 30, true).await;
}

/// The copy path, with less data: it is the same loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_gib_arrives_intact_with_copy() {
    bulk_round_trip(1 << 29, false).await;
}

async fn bulk_round_trip(total: u64, splice: bool) {
    let backend = EchoBackend::start("b1").await;
    let settings = ProxySection {
        splice,
        ..settings()
    };
    let p = proxy(&[("b1", backend.address, false)], settings, 10_000).await;
    let (stream, _) = hello(p.address).await;
    let (mut r, mut w) = stream.into_split();
    let writer = tokio::spawn(async move {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut sum = Fnv::default();
        let mut chunk = vec![0u8; 256 * 1024];
        let mut sent = 0u64;
        while sent < total {
            for word in chunk.chunks_exact_mut(8) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                word.copy_from_slice(&state.to_le_bytes());
            }
            sum.update(&chunk);
            w.write_all(&chunk).await.unwrap();
            sent += chunk.len() as u64;
        }
        w.shutdown().await.unwrap();
        sum.0
    });
    let mut sum = Fnv::default();
    let mut received = 0u64;
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let n = r.read(&mut buffer).await.unwrap();
        if n == 0 {
            break;
        }
        sum.update(&buffer[..n]);
        received += n as u64;
    }
    assert_eq!(received, total);
    assert_eq!(sum.0, writer.await.unwrap(), "checksums differ");
}

/// FNV-1a over the bytes: order-sensitive, enough to catch a lost or
/// reordered chunk.
#[derive(Default)]
struct Fnv(u64);

impl Fnv {
    fn update(&mut self, bytes: &[u8]) {
        if self.0 == 0 {
            self.0 = 0xcbf2_9ce4_8422_2325;
        }
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[tokio::test]
async fn a_backend_dying_mid_stream_ends_that_session_only() {
    let dying = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let dying_address = dying.local_addr().unwrap();
    let survivor = EchoBackend::start("b2").await;
    let settings = ProxySection {
        balance: Balance::RoundRobin,
        ..settings()
    };
    let p = proxy(
        &[
            ("b1", dying_address, false),
            ("b2", survivor.address, false),
        ],
        settings,
        50,
    )
    .await;
    // The first session lands on b1 (round robin starts there).
    let mut client = TcpStream::connect(p.address).await.unwrap();
    client.write_all(b"?").await.unwrap();
    let mut backend_side = accept_proxied(&dying, b"?").await;
    backend_side.write_all(b"partial").await.unwrap();
    let mut got = [0u8; 7];
    tokio::time::timeout(BOUND, client.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    // b1 dies mid-stream: its process is gone, the socket is reset.
    socket2::SockRef::from(&backend_side)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(backend_side);
    drop(dying);
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(BOUND, client.read_to_end(&mut rest))
        .await
        .unwrap();
    assert!(
        ended.is_err() || rest.is_empty(),
        "the session ends with its backend"
    );
    // New sessions go to the survivor.
    for _ in 0..4 {
        let (_, name) = hello(p.address).await;
        assert_eq!(name, "b2");
    }
}

#[tokio::test]
async fn close_sessions_on_down_cuts_the_sessions_of_a_backend_marked_down() {
    let flaky = EchoBackend::start("b1").await;
    let closing = ProxySection {
        close_sessions_on_down: true,
        ..settings()
    };
    let p = proxy(&[("b1", flaky.address, false)], closing, 50).await;
    let (mut session, _) = hello(p.address).await;
    // The listener goes (checks fail) but the established session is healthy.
    flaky.stop();
    let mut rest = Vec::new();
    let cut = tokio::time::timeout(BOUND, session.read_to_end(&mut rest)).await;
    assert!(
        cut.is_ok(),
        "the session was closed when its backend was marked down"
    );

    // Without the option, the same session survives the mark-down.
    let steady = EchoBackend::start("b2").await;
    let p2 = proxy(&[("b2", steady.address, false)], settings(), 50).await;
    let (mut session, _) = hello(p2.address).await;
    steady.stop();
    tokio::time::sleep(Duration::from_millis(400)).await;
    session.write_all(b"alive").await.unwrap();
    let mut echo = [0u8; 5];
    tokio::time::timeout(BOUND, session.read_exact(&mut echo))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echo, b"alive");
}

#[tokio::test]
async fn idle_sessions_close_and_busy_ones_stay() {
    let backend = EchoBackend::start("b1").await;
    let settings = ProxySection {
        idle_timeout: Interval::from_millis(300),
        ..settings()
    };
    let p = proxy(&[("b1", backend.address, false)], settings, 10_000).await;
    // Silent in both directions: closed after the idle timeout.
    let (mut idle, _) = hello(p.address).await;
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    tokio::time::timeout(BOUND, idle.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "closed too early: {:?}",
        started.elapsed()
    );
    // Traffic every 100 ms keeps a session open well past the timeout.
    let (mut busy, _) = hello(p.address).await;
    for _ in 0..10 {
        busy.write_all(b"x").await.unwrap();
        let mut echo = [0u8; 1];
        tokio::time::timeout(BOUND, busy.read_exact(&mut echo))
            .await
            .unwrap()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The client leg gets TCP_NODELAY and keepalive from the listener: Linux
/// copies them to accepted sockets, so no system call per connection.
#[tokio::test]
async fn accepted_sockets_inherit_nodelay_and_keepalive() {
    let listener = frontend::bind(SocketAddr::new(LOCALHOST, 0), 16, false).unwrap();
    let address = listener.local_addr().unwrap();
    let _client = TcpStream::connect(address).await.unwrap();
    let (accepted, _) = listener.accept().await.unwrap();
    let socket = socket2::SockRef::from(&accepted);
    assert!(socket.tcp_nodelay().unwrap());
    assert!(socket.keepalive().unwrap());
    assert_eq!(
        socket.tcp_keepalive_time().unwrap(),
        Duration::from_secs(60)
    );
    assert_eq!(
        socket.tcp_keepalive_interval().unwrap(),
        Duration::from_secs(10)
    );
    assert_eq!(socket.tcp_keepalive_retries().unwrap(), 6);
}

/// With several workers a frontend binds one socket per worker with
/// SO_REUSEPORT; a port another program holds with SO_REUSEPORT (HAProxy
/// sets it) is still refused instead of silently shared.
#[tokio::test]
async fn sharded_listeners_share_their_port_but_refuse_a_taken_one() {
    let listeners = frontend::bind_shards(SocketAddr::new(LOCALHOST, 0), 16, false, 2).unwrap();
    let address = listeners.local_addr().unwrap();
    assert_ne!(address.port(), 0);
    // Taken by our own shards: a third binder is refused.
    let error = frontend::bind_shards(address, 16, false, 2).unwrap_err();
    assert!(
        format!("{error:#}").contains("cannot listen on"),
        "{error:#}"
    );

    let other = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    other.set_reuse_port(true).unwrap();
    other.bind(&SocketAddr::new(LOCALHOST, 0).into()).unwrap();
    other.listen(16).unwrap();
    let taken = other.local_addr().unwrap().as_socket().unwrap();
    let error = frontend::bind_shards(taken, 16, false, 2).unwrap_err();
    assert!(
        format!("{error:#}").contains("cannot listen on"),
        "{error:#}"
    );
}

/// A frontend on two worker threads: the sessions of both listeners work,
/// and a stop drains and ends both accept loops.
#[tokio::test]
async fn a_frontend_on_worker_threads_serves_and_stops() {
    let backend = EchoBackend::start("one").await;
    let plan = Frontend {
        name: "workers",
        listen: SocketAddr::new(LOCALHOST, 0),
        backends: vec![Backend {
            node: "one".to_owned(),
            address: backend.address,
            local: false,
            check: tcp_check(1000),
        }],
    };
    let workers = frontend::Workers::start(2).unwrap();
    assert_eq!(workers.listeners(), 2);
    let listeners = frontend::bind_shards(plan.listen, 128, false, workers.listeners()).unwrap();
    let address = listeners.local_addr().unwrap();
    let shared = Arc::new(vipd::proxy::frontend::Frontend::new(
        &plan,
        Balance::RoundRobin,
    ));
    let (_updates, updates_rx) = tokio::sync::mpsc::channel(1);
    let (stop, stop_rx) = watch::channel(false);
    let initial = frontend::FrontendUpdate {
        plan,
        settings: settings(),
    };
    let task_shared = Arc::clone(&shared);
    let task = tokio::spawn(async move {
        frontend::serve(
            initial,
            listeners,
            task_shared,
            updates_rx,
            stop_rx,
            &workers,
        )
        .await
    });
    // Enough connections that both listeners get some (the kernel hashes
    // each connection to one of them).
    for _ in 0..32 {
        let mut client = tokio::time::timeout(BOUND, TcpStream::connect(address))
            .await
            .unwrap()
            .unwrap();
        let mut hello = [0u8; 3];
        tokio::time::timeout(BOUND, client.read_exact(&mut hello))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&hello, b"one");
        client.write_all(b"ping").await.unwrap();
        let mut echo = [0u8; 4];
        tokio::time::timeout(BOUND, client.read_exact(&mut echo))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&echo, b"ping");
    }
    assert_eq!(shared.stats.accepted.get(), 32);
    stop.send_replace(true);
    tokio::time::timeout(BOUND, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(TcpStream::connect(address).await.is_err());
    backend.stop();
}

/// A backend that answers and closes at once (an HTTP/1.0 server, a
/// connection-per-request client): the answer and the FIN often arrive
/// together, and the proxy ends the direction without a read that returns
/// 0. Every byte still arrives, then the FIN; small and bulk answers, with
/// splice and without.
#[tokio::test]
async fn an_answer_and_its_fin_arriving_together_are_both_passed_on() {
    for splice in [true, false] {
        for size in [2usize, 1000, 100_000] {
            let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
            let address = listener.local_addr().unwrap();
            let server = tokio::spawn(async move {
                for _ in 0..20 {
                    let (mut stream, _) = listener.accept().await.unwrap();
                    let mut request = [0u8; 4];
                    if stream.read_exact(&mut request).await.is_err() {
                        // The health checker's connection.
                        continue;
                    }
                    let answer: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
                    stream.write_all(&answer).await.unwrap();
                    // Dropped: the FIN follows the answer at once.
                }
            });
            let settings = ProxySection {
                splice,
                ..settings()
            };
            let p = proxy(&[("b1", address, false)], settings, 60_000).await;
            for _ in 0..5 {
                let mut client = TcpStream::connect(p.address).await.unwrap();
                client.write_all(b"GET ").await.unwrap();
                let mut answer = Vec::new();
                tokio::time::timeout(BOUND, client.read_to_end(&mut answer))
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(answer.len(), size, "splice {splice}");
                assert!(
                    answer
                        .iter()
                        .enumerate()
                        .all(|(i, &b)| b == (i % 251) as u8),
                    "splice {splice}, size {size}: bytes changed"
                );
            }
            p.stop.send_replace(true);
            tokio::time::timeout(BOUND, p.task)
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            server.abort();
        }
    }
}
