//! A stand-in kube-apiserver for the lab and the tests: HTTPS, answering
//! the health endpoints the way the real one does, with a switch to make it
//! unhealthy or unresponsive. It lives in the lab code only; the daemon
//! never serves anything like it.
//!
//! - `GET /readyz`, `/livez`, `/healthz`: 200 `ok` when healthy, 500 otherwise;
//! - `GET /version`: a JSON version document;
//! - `GET /watch`: a long-lived response, one line every 100 ms, like a watch.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use rustls::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// How the stand-in behaves right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Behaviour {
    Healthy = 0,
    /// Health endpoints answer 500, as an apiserver that lost etcd.
    Unhealthy = 1,
    /// Accepts connections and never answers, as a hung process.
    Silent = 2,
}

/// A running stand-in. Dropping it stops the server.
#[derive(Debug)]
pub struct StandIn {
    pub address: SocketAddr,
    behaviour: Arc<AtomicU8>,
    task: JoinHandle<()>,
}

impl StandIn {
    /// Serves on `listener` (already bound, so the caller chooses the
    /// namespace and address) with `tls`.
    pub fn serve(listener: TcpListener, tls: Arc<ServerConfig>) -> std::io::Result<Self> {
        Self::serve_named(listener, tls, None)
    }

    /// [`Self::serve`], naming itself in an `X-Lab-Node` header of every
    /// response, so a client learns which plane answered.
    pub fn serve_named(
        listener: TcpListener,
        tls: Arc<ServerConfig>,
        name: Option<String>,
    ) -> std::io::Result<Self> {
        let address = listener.local_addr()?;
        let name: Arc<str> = Arc::from(name.unwrap_or_default());
        let behaviour = Arc::new(AtomicU8::new(Behaviour::Healthy as u8));
        let shared = Arc::clone(&behaviour);
        let acceptor = TlsAcceptor::from(tls);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let behaviour = Arc::clone(&shared);
                let name = Arc::clone(&name);
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(stream).await {
                        let _ = handle(tls, &behaviour, &name).await;
                    }
                });
            }
        });
        Ok(Self {
            address,
            behaviour,
            task,
        })
    }

    pub fn set(&self, behaviour: Behaviour) {
        self.behaviour.store(behaviour as u8, Ordering::Relaxed);
    }

    /// A handle that switches the behaviour from another thread.
    pub fn switch(&self) -> Switch {
        Switch(Arc::clone(&self.behaviour))
    }
}

/// Switches a running stand-in's behaviour; cheap to clone, usable anywhere.
#[derive(Debug, Clone)]
pub struct Switch(Arc<AtomicU8>);

impl Switch {
    pub fn set(&self, behaviour: Behaviour) {
        self.0.store(behaviour as u8, Ordering::Relaxed);
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut stream: S,
    behaviour: &AtomicU8,
    name: &str,
) -> std::io::Result<()> {
    let node_header = if name.is_empty() {
        String::new()
    } else {
        format!("X-Lab-Node: {name}\r\n")
    };
    let mut request = Vec::new();
    let mut chunk = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 || request.len() > 16 * 1024 {
            return Ok(());
        }
        request.extend_from_slice(&chunk[..n]);
    }
    let current = behaviour.load(Ordering::Relaxed);
    if current == Behaviour::Silent as u8 {
        // Hold the connection open without a word until the client gives up.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        return Ok(());
    }
    let line = String::from_utf8_lossy(&request);
    let path = line.split_whitespace().nth(1).unwrap_or("/");
    let healthy = current == Behaviour::Healthy as u8;
    let (status, body) = match path.split('?').next().unwrap_or(path) {
        "/readyz" | "/livez" | "/healthz" if healthy => ("200 OK", "ok".to_owned()),
        "/readyz" | "/livez" | "/healthz" => (
            "500 Internal Server Error",
            "[-]etcd failed: reason withheld\nreadyz check failed".to_owned(),
        ),
        "/version" => (
            "200 OK",
            r#"{"major":"1","minor":"31","gitVersion":"v1.31.0-vipd-lab"}"#.to_owned(),
        ),
        "/watch" => {
            stream
                .write_all(
                    format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n{node_header}Transfer-Encoding: chunked\r\n\r\n")
                        .as_bytes(),
                )
                .await?;
            for i in 0u64.. {
                let line = format!("event {i}\n");
                stream
                    .write_all(format!("{:x}\r\n{line}\r\n", line.len()).as_bytes())
                    .await?;
                stream.flush().await?;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            return Ok(());
        }
        _ => ("404 Not Found", "not found".to_owned()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\n{node_header}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// A stand-in served by a thread inside a network namespace, for as long as
/// this value lives (tests and the lab's in-process uses).
#[derive(Debug)]
pub struct InNamespace {
    switch: Switch,
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<std::io::Result<()>>>>,
}

impl InNamespace {
    /// Serves a stand-in on `address` inside `host`, with a certificate
    /// from `ca` for `kubernetes` and the address itself.
    pub fn start(
        host: &super::netns::Netns,
        ca: &super::pki::LabCa,
        address: SocketAddr,
    ) -> std::io::Result<Self> {
        let certificate = ca
            .server_certificate(&["kubernetes"], &[address.ip()])
            .map_err(std::io::Error::other)?;
        let tls = certificate.server_config().map_err(std::io::Error::other)?;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let thread = host.spawn_thread(move || -> std::io::Result<()> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let listener = TcpListener::bind(address).await?;
                let server = StandIn::serve(listener, tls)?;
                let _ = ready_tx.send(server.switch());
                // Until told to stop, or until the owner is gone (a dropped
                // sender ends the wait too).
                let _ = tokio::task::spawn_blocking(move || stop_rx.recv()).await;
                drop(server);
                Ok(())
            })
        })?;
        let switch = ready_rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| {
                std::io::Error::other(format!("the stand-in on {address} did not start"))
            })?;
        Ok(Self {
            switch,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    pub fn switch(&self) -> &Switch {
        &self.switch
    }

    /// Stops the server: its listener closes and new connections are refused.
    pub fn kill(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for InNamespace {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The stand-in as a process of its own (`vipd lab apiserver`, which
/// `vipd lab up` starts in each plane's namespace): HTTPS on `listen` with
/// `cert` and `key` (PEM), named `name`, until SIGTERM or SIGINT; SIGUSR1
/// makes it unhealthy, SIGUSR2 healthy again.
pub fn run(
    listen: SocketAddr,
    cert: &std::path::Path,
    key: &std::path::Path,
    name: &str,
) -> Result<(), String> {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio::signal::unix::{SignalKind, signal};

    use super::lifecycle::progress;

    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    let private =
        PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, private)
        .map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        let server = StandIn::serve_named(listener, Arc::new(tls), Some(name.to_owned()))
            .map_err(|e| e.to_string())?;
        let (Ok(mut usr1), Ok(mut usr2), Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::user_defined1()),
            signal(SignalKind::user_defined2()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return Err("cannot install signal handlers".to_owned());
        };
        progress(&format!("stand-in apiserver {name} on https://{listen}"));
        loop {
            tokio::select! {
                _ = usr1.recv() => { server.set(Behaviour::Unhealthy); progress("unhealthy (SIGUSR1)"); }
                _ = usr2.recv() => { server.set(Behaviour::Healthy); progress("healthy (SIGUSR2)"); }
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
        }
        progress("stopping");
        Ok(())
    })
}
