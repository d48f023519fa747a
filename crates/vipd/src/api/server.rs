//! The control socket and the metrics listener.
//!
//! The socket speaks HTTP/1.1 on a Unix socket that only root can open
//! (mode 0600 in a 0700 directory), the way Docker's and containerd's do:
//! file permissions are the authentication. Routes:
//!
//! - `GET /v1/status`: the [`StatusDocument`](super::schema::StatusDocument);
//! - `POST /v1/reload`: re-read the cluster file, answer the
//!   [`ReloadOutcome`] (HTTP 200 applied, 422 refused);
//! - `GET /metrics`: the Prometheus exposition (also on the metrics address).

use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::extract::State as Extract;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::warn;

use super::State;
use super::metrics;
use super::schema::ReloadOutcome;

/// A reload asked for by SIGHUP or the API; the daemon answers on `reply`.
#[derive(Debug)]
pub struct ReloadRequest {
    pub trigger: &'static str,
    pub reply: Option<oneshot::Sender<ReloadOutcome>>,
}

#[derive(Clone)]
struct Shared {
    state: Arc<State>,
    registry: Arc<prometheus_client::registry::Registry>,
    reload: mpsc::Sender<ReloadRequest>,
}

/// Binds the control socket at `path`: creates its directory (0700) if
/// missing, replaces a stale socket a crashed run left, refuses one a
/// running daemon still answers on.
pub fn bind_socket(path: &Path) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
        && !dir.exists()
    {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "{} answers: another vipd is running with this control socket (give this one `--socket PATH`)",
                    path.display()
                ),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

fn router(state: Arc<State>, reload: mpsc::Sender<ReloadRequest>) -> Router {
    let registry = Arc::new(metrics::registry(Arc::clone(&state)));
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/reload", post(reload_now))
        .route("/metrics", get(scrape))
        .with_state(Shared {
            state,
            registry,
            reload,
        })
}

/// Serves the control socket until `stop` turns true.
pub async fn serve_socket(
    listener: UnixListener,
    state: Arc<State>,
    reload: mpsc::Sender<ReloadRequest>,
    stop: watch::Receiver<bool>,
) -> io::Result<()> {
    axum::serve(listener, router(state, reload))
        .with_graceful_shutdown(stopped(stop))
        .await
}

/// Serves `GET /metrics` on `listener` until `stop` turns true.
pub async fn serve_metrics(
    listener: TcpListener,
    state: Arc<State>,
    stop: watch::Receiver<bool>,
) -> io::Result<()> {
    let registry = Arc::new(metrics::registry(state));
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let registry = Arc::clone(&registry);
            async move { exposition(&registry) }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(stopped(stop))
        .await
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

async fn status(Extract(shared): Extract<Shared>) -> impl IntoResponse {
    axum::Json(shared.state.document())
}

async fn reload_now(Extract(shared): Extract<Shared>) -> axum::response::Response {
    let (reply, answer) = oneshot::channel();
    let request = ReloadRequest {
        trigger: "api",
        reply: Some(reply),
    };
    if shared.reload.send(request).await.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "the daemon is stopping\n").into_response();
    }
    match answer.await {
        Ok(outcome) => {
            let code = if outcome.ok {
                StatusCode::OK
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            (code, axum::Json(outcome)).into_response()
        }
        Err(_) => {
            warn!("a reload request got no answer");
            (StatusCode::SERVICE_UNAVAILABLE, "the daemon is stopping\n").into_response()
        }
    }
}

async fn scrape(Extract(shared): Extract<Shared>) -> impl IntoResponse {
    exposition(&shared.registry)
}

fn exposition(registry: &prometheus_client::registry::Registry) -> impl IntoResponse + use<> {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics::encode(registry),
    )
}
