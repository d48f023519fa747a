//! systemd's service protocol without systemd: the test binds a Unix
//! datagram socket, runs a child with `NOTIFY_SOCKET` (and
//! `WATCHDOG_USEC`) pointing at it, the way systemd starts a `Type=notify`
//! service, and reads what arrives. The child is this test binary again,
//! running the ignored test `child_speaks_the_service_protocol`, so no test
//! changes its own environment.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use vipd::service;

const CHILD: &str = "child_speaks_the_service_protocol";

#[test]
fn notifications_reach_the_service_manager_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&path).unwrap();
    // Bounded: a child that never sends fails the test instead of hanging it.
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            CHILD,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("NOTIFY_SOCKET", &path)
        // 200 ms: a ping every 100 ms. No WATCHDOG_PID, as the test cannot
        // know the child's PID before it starts; sd_watchdog_enabled(3)
        // accepts that.
        .env("WATCHDOG_USEC", "200000")
        .env_remove("WATCHDOG_PID")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut messages = Vec::new();
    let mut buf = [0u8; 4096];
    // ready, status, reloading, ready, 3 pings (then the child's loop
    // stalls: no more), stopping.
    while messages.len() < 8 {
        match socket.recv(&mut buf) {
            Ok(n) => messages.push(String::from_utf8(buf[..n].to_vec()).unwrap()),
            Err(e) => panic!("after {messages:?}: {e}"),
        }
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "child: {status}");

    assert_eq!(messages[0], "READY=1\nSTATUS=serving\n");
    assert_eq!(messages[1], "STATUS=VRRP master, 3 of 3 planes up\n");
    let reload: Vec<&str> = messages[2].lines().collect();
    assert_eq!(reload[0], "RELOADING=1");
    let usec: u64 = reload[1]
        .strip_prefix("MONOTONIC_USEC=")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {:?}", messages[2]));
    assert!(usec > 0);
    assert_eq!(reload[2], "STATUS=reloading the cluster file");
    assert_eq!(messages[3], "READY=1\nSTATUS=reloaded\n");
    assert_eq!(&messages[4..7], ["WATCHDOG=1\n"; 3]);
    assert_eq!(messages[7], "STOPPING=1\nSTATUS=stopping\n");
}

/// The child of the test above: speaks the protocol to `NOTIFY_SOCKET`.
#[test]
#[ignore = "run by notifications_reach_the_service_manager_socket, with NOTIFY_SOCKET set"]
fn child_speaks_the_service_protocol() {
    assert!(
        std::env::var_os("NOTIFY_SOCKET").is_some(),
        "run by notifications_reach_the_service_manager_socket"
    );
    service::ready("serving");
    service::status("VRRP master,\n3 of 3 planes up");
    service::reloading();
    service::ready("reloaded");
    let interval = service::watchdog_interval().expect("WATCHDOG_USEC is set");
    assert_eq!(interval, Duration::from_millis(100));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        // Alive for three checks, then stalled: exactly three pings.
        let third_ping = Arc::new(tokio::sync::Notify::new());
        let checks = Arc::new(AtomicUsize::new(0));
        let (seen, signal) = (checks.clone(), third_ping.clone());
        let watchdog = tokio::spawn(service::watchdog(interval, move || {
            match seen.fetch_add(1, Ordering::SeqCst) + 1 {
                n if n < 3 => Ok(()),
                3 => {
                    signal.notify_one();
                    Ok(())
                }
                _ => Err(service::Stalled {
                    name: "test".into(),
                    silent_for: Duration::from_secs(1),
                    limit: Duration::ZERO,
                }),
            }
        }));
        tokio::time::timeout(Duration::from_secs(20), third_ping.notified())
            .await
            .expect("three watchdog checks within 20 s");
        // Let the stalled checks come: they must not ping.
        while checks.load(Ordering::SeqCst) < 5 {
            tokio::time::sleep(interval).await;
        }
        watchdog.abort();
    });
    service::stopping();
}
