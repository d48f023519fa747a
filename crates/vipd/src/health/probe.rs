//! One health check: a TCP connect, or an HTTPS GET that must answer 200.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::tls::{TlsSetupError, client_config};
use crate::config::resolve::HealthCheck;
use crate::config::spec::CheckKind;

/// Why a probe failed. The `Display` is what logs and the status show.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("TLS: {0}")]
    Tls(std::io::Error),
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("bad HTTP response: {0}")]
    BadResponse(String),
    #[error("I/O: {0}")]
    Io(std::io::Error),
}

/// Why a configured check cannot become a probe.
#[derive(Debug, thiserror::Error)]
pub enum ProbeSetupError {
    #[error("\"{0}\" is not a valid TLS server name")]
    ServerName(String),
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
}

/// What to check.
#[derive(Debug, Clone)]
pub enum Probe {
    /// Healthy when a TCP connection completes.
    Tcp(SocketAddr),
    /// Healthy when `GET path` over TLS answers 200.
    Https(HttpsProbe),
}

#[derive(Debug, Clone)]
pub struct HttpsProbe {
    pub address: SocketAddr,
    pub path: String,
    /// SNI and the name the certificate must carry.
    pub server_name: ServerName<'static>,
    pub tls: Arc<ClientConfig>,
}

/// The most of a response the probe reads: the status line is all it needs.
const MAX_RESPONSE_HEAD: usize = 4096;

impl Probe {
    /// The probe a configured check runs against `target`: TCP, or HTTPS
    /// with the cluster CA (none with `insecure_skip_verify`) and the
    /// configured server name, else the target's address, for SNI.
    pub fn from_check(target: SocketAddr, check: &HealthCheck) -> Result<Probe, ProbeSetupError> {
        Ok(match check.kind {
            CheckKind::Tcp => Probe::Tcp(target),
            CheckKind::Https => {
                let ca = if check.insecure_skip_verify {
                    None
                } else {
                    check.ca_file.as_deref()
                };
                let name = check
                    .server_name
                    .clone()
                    .unwrap_or_else(|| target.ip().to_string());
                Probe::Https(HttpsProbe {
                    address: target,
                    path: check.path.clone().unwrap_or_else(|| "/readyz".to_owned()),
                    server_name: ServerName::try_from(name.clone())
                        .map_err(|_| ProbeSetupError::ServerName(name))?,
                    tls: client_config(ca)?,
                })
            }
        })
    }

    pub fn target(&self) -> SocketAddr {
        match self {
            Probe::Tcp(address) => *address,
            Probe::Https(https) => https.address,
        }
    }

    /// Runs the check; on success returns how long it took.
    pub async fn run(&self, timeout: Duration) -> Result<Duration, ProbeError> {
        let started = Instant::now();
        let outcome = tokio::time::timeout(timeout, async {
            match self {
                Probe::Tcp(address) => TcpStream::connect(address)
                    .await
                    .map(drop)
                    .map_err(ProbeError::Connect),
                Probe::Https(https) => https.run().await,
            }
        })
        .await;
        match outcome {
            Ok(Ok(())) => Ok(started.elapsed()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ProbeError::Timeout(timeout)),
        }
    }
}

impl HttpsProbe {
    async fn run(&self) -> Result<(), ProbeError> {
        let tcp = TcpStream::connect(self.address)
            .await
            .map_err(ProbeError::Connect)?;
        tcp.set_nodelay(true).map_err(ProbeError::Io)?;
        let mut tls = TlsConnector::from(Arc::clone(&self.tls))
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(ProbeError::Tls)?;
        let host = match &self.server_name {
            ServerName::DnsName(name) => name.as_ref().to_owned(),
            _ => self.address.to_string(),
        };
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: vipd-health\r\nAccept: */*\r\nConnection: close\r\n\r\n",
            self.path
        );
        tls.write_all(request.as_bytes())
            .await
            .map_err(ProbeError::Io)?;
        let mut head = Vec::with_capacity(256);
        let mut chunk = [0u8; 512];
        while !head.windows(2).any(|w| w == b"\r\n") {
            let n = tls.read(&mut chunk).await.map_err(ProbeError::Io)?;
            if n == 0 {
                return Err(ProbeError::BadResponse(
                    "connection closed before a status line".into(),
                ));
            }
            head.extend_from_slice(&chunk[..n]);
            if head.len() > MAX_RESPONSE_HEAD {
                return Err(ProbeError::BadResponse(
                    "no status line in the first 4 KiB".into(),
                ));
            }
        }
        let status = parse_status_line(&head)?;
        if status == 200 {
            Ok(())
        } else {
            Err(ProbeError::Status(status))
        }
    }
}

/// The status code of `HTTP/1.x NNN reason`.
fn parse_status_line(head: &[u8]) -> Result<u16, ProbeError> {
    let line_end = head
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(head.len());
    let line = String::from_utf8_lossy(&head[..line_end]);
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let code = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(ProbeError::BadResponse(format!("not HTTP/1.x: {line:.60}")));
    }
    code.parse::<u16>()
        .ok()
        .filter(|c| (100..600).contains(c))
        .ok_or_else(|| ProbeError::BadResponse(format!("bad status line: {line:.60}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK\r\n").unwrap(), 200);
        assert_eq!(
            parse_status_line(b"HTTP/1.0 503 Service Unavailable\r\nx").unwrap(),
            503
        );
        assert!(parse_status_line(b"SSH-2.0-OpenSSH\r\n").is_err());
        assert!(parse_status_line(b"HTTP/1.1 2000 OK\r\n").is_err());
        assert!(parse_status_line(b"HTTP/1.1\r\n").is_err());
    }
}
