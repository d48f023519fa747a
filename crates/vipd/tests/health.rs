//! Health probes and checkers against real servers on loopback: a stand-in
//! kube-apiserver with certificates from a CA made in the test.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::ServerName;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use vipd::health::checker::{self, Check};
use vipd::health::probe::{HttpsProbe, Probe, ProbeError};
use vipd::health::tls::{TlsSetupError, client_config};
use vipd::lab::apiserver::{Behaviour, StandIn};
use vipd::lab::pki::LabCa;
use vipd_core::health::{Health, Thresholds};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

struct Fixture {
    _dir: tempfile::TempDir,
    ca_path: std::path::PathBuf,
    server: StandIn,
}

async fn fixture() -> Fixture {
    let ca = LabCa::new("vipd test CA").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca.crt");
    std::fs::write(&ca_path, ca.certificate_pem()).unwrap();
    let certificate = ca
        .server_certificate(&["kubernetes"], &[LOCALHOST])
        .unwrap();
    let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let server = StandIn::serve(listener, certificate.server_config().unwrap()).unwrap();
    Fixture {
        _dir: dir,
        ca_path,
        server,
    }
}

fn https(address: SocketAddr, path: &str, name: &str, tls: Arc<rustls::ClientConfig>) -> Probe {
    Probe::Https(HttpsProbe {
        address,
        path: path.to_owned(),
        server_name: ServerName::try_from(name.to_owned()).unwrap(),
        tls,
    })
}

const TIMEOUT: Duration = Duration::from_secs(2);

#[tokio::test]
async fn https_readyz_verified_against_the_cluster_ca() {
    let f = fixture().await;
    let tls = client_config(Some(&f.ca_path)).unwrap();
    // By IP (kubeadm puts the node address in the apiserver certificate) and by name.
    https(f.server.address, "/readyz", "127.0.0.1", Arc::clone(&tls))
        .run(TIMEOUT)
        .await
        .unwrap();
    https(f.server.address, "/livez", "kubernetes", Arc::clone(&tls))
        .run(TIMEOUT)
        .await
        .unwrap();
    // A name the certificate does not carry fails verification.
    let wrong = https(f.server.address, "/readyz", "not-the-apiserver", tls)
        .run(TIMEOUT)
        .await;
    assert!(matches!(wrong, Err(ProbeError::Tls(_))), "{wrong:?}");
}

#[tokio::test]
async fn unhealthy_and_missing_endpoints_fail_with_their_status() {
    let f = fixture().await;
    let tls = client_config(Some(&f.ca_path)).unwrap();
    f.server.set(Behaviour::Unhealthy);
    let result = https(f.server.address, "/readyz", "kubernetes", Arc::clone(&tls))
        .run(TIMEOUT)
        .await;
    assert!(matches!(result, Err(ProbeError::Status(500))), "{result:?}");
    f.server.set(Behaviour::Healthy);
    let result = https(f.server.address, "/nope", "kubernetes", tls)
        .run(TIMEOUT)
        .await;
    assert!(matches!(result, Err(ProbeError::Status(404))), "{result:?}");
}

#[tokio::test]
async fn another_ca_is_refused_and_skip_verify_accepts_it() {
    let f = fixture().await;
    let other = LabCa::new("someone else").unwrap();
    let other_path = f.ca_path.with_file_name("other.crt");
    std::fs::write(&other_path, other.certificate_pem()).unwrap();
    let refused = https(
        f.server.address,
        "/readyz",
        "kubernetes",
        client_config(Some(&other_path)).unwrap(),
    )
    .run(TIMEOUT)
    .await;
    assert!(matches!(refused, Err(ProbeError::Tls(_))), "{refused:?}");
    https(
        f.server.address,
        "/readyz",
        "kubernetes",
        client_config(None).unwrap(),
    )
    .run(TIMEOUT)
    .await
    .unwrap();
}

#[tokio::test]
async fn a_silent_server_times_out() {
    let f = fixture().await;
    f.server.set(Behaviour::Silent);
    let tls = client_config(Some(&f.ca_path)).unwrap();
    let result = https(f.server.address, "/readyz", "kubernetes", tls)
        .run(Duration::from_millis(300))
        .await;
    assert!(matches!(result, Err(ProbeError::Timeout(_))), "{result:?}");
}

#[tokio::test]
async fn tcp_probe_connects_or_reports_refusal() {
    let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let open = listener.local_addr().unwrap();
    Probe::Tcp(open).run(TIMEOUT).await.unwrap();
    drop(listener);
    let result = Probe::Tcp(open).run(TIMEOUT).await;
    assert!(matches!(result, Err(ProbeError::Connect(_))), "{result:?}");
}

#[tokio::test]
async fn a_bad_ca_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.crt");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    assert!(matches!(
        client_config(Some(&empty)),
        Err(TlsSetupError::EmptyCaFile { .. })
    ));
    let missing = client_config(Some(&dir.path().join("missing.crt")));
    let message = missing.unwrap_err().to_string();
    assert!(message.contains("missing.crt"), "{message}");
}

/// The checker flips only after `fall` failures and `rise` successes.
#[tokio::test]
async fn the_checker_follows_rise_and_fall() {
    let f = fixture().await;
    let tls = client_config(Some(&f.ca_path)).unwrap();
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let check = Check {
        name: "backend test".into(),
        probe: https(f.server.address, "/readyz", "kubernetes", tls),
        interval: Duration::from_millis(50),
        timeout: Duration::from_millis(500),
        thresholds: Thresholds::new(2, 3),
        initial: Health::Down,
        record: None,
    };
    let task = checker::spawn(7, check, events_tx);
    let up = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((up.index, up.health), (7, Health::Up));
    f.server.set(Behaviour::Unhealthy);
    let started = tokio::time::Instant::now();
    let down = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(down.health, Health::Down);
    assert!(down.detail.contains("500"), "{}", down.detail);
    // Three failures at 50 ms intervals: not before about 100 ms.
    assert!(
        started.elapsed() >= Duration::from_millis(100),
        "{:?}",
        started.elapsed()
    );
    f.server.set(Behaviour::Healthy);
    let up = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(up.health, Health::Up);
    task.abort();
}
