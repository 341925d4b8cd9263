//! The HTTP side of mongobak: an axum application around [`mongobak_api::Api`].
//!
//! Routes:
//! * `GET|POST /`: Tencent Cloud API 3.0. Every answer, errors included, is
//!   HTTP 200 with `Content-Type: application/json` exactly: the Python SDK
//!   only looks for an `Error` under that exact type (`docs/protocol.md` §3).
//! * `GET /healthz`: the process is up.
//! * `GET /readyz`: the metadata store and the blob storage answer, and
//!   the data folder's file system has the configured free space.
//! * `GET /metrics`: Prometheus text (requests by action and code, latency,
//!   backups and downloads), without instance IDs or account identifiers.
//! * `GET /download/<task>/<file>`: a packaged download file behind a
//!   signed, expiring URL, with `Range` support (the `download` module).
//! * `GET /console/`: the web console, static files built into the binary
//!   (the `console` module; off with `[server] console = false`).
//!
//! [`run`] serves a bound listener until a cancellation token fires, then
//! lets in-flight requests finish (graceful shutdown), over plain HTTP or
//! TLS (rustls), with a header read timeout, an idle timeout and a cap on
//! open connections (the `listener` module). [`run_admin`] serves the operator's
//! `/metrics`, with per-instance series, on a listener of its own. Tests
//! bind `127.0.0.1:0` and call them in-process.

mod console;
mod download;
mod listener;
mod metrics;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use tokio_util::sync::CancellationToken;

pub use listener::connection_ceiling;
use mongobak_api::{Api, ApiError, ErrorKind, RawRequest, Reply};

/// Settings of the HTTP server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest accepted request body; larger ones get
    /// `RequestSizeLimitExceeded`.
    pub max_body_bytes: usize,
    /// Serve HTTPS with this certificate chain and key (PEM files).
    pub tls: Option<TlsFiles>,
    /// How long in-flight requests may take to finish at shutdown.
    pub shutdown_grace: Duration,
    /// Time allowed for a request head (and the TLS handshake before the
    /// first one) to arrive whole.
    pub header_read_timeout: Duration,
    /// A connection with no request being handled and no byte moved for
    /// this long is closed; also the longest pause within a request body.
    pub idle_timeout: Duration,
    /// Open connections at most; `None` for [`DEFAULT_MAX_CONNECTIONS`].
    /// Either way no more than [`connection_ceiling`] allows.
    pub max_connections: Option<usize>,
    /// The data folder, whose file system `/readyz` checks for free space.
    pub data_dir: Option<PathBuf>,
    /// `/readyz` answers 503 when the data folder's file system has less
    /// free space than this, in bytes (0: no check).
    pub min_free_disk_bytes: u64,
    /// Serve the web console at `/console/`.
    pub console: bool,
}

/// Open connections at most when the configuration names no number.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// Open connections at most on the admin listener.
const ADMIN_MAX_CONNECTIONS: usize = 16;

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_body_bytes: 10 * 1024 * 1024,
            tls: None,
            shutdown_grace: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            max_connections: None,
            data_dir: None,
            min_free_disk_bytes: 0,
            console: true,
        }
    }
}

impl ServerConfig {
    /// The connection cap in force: the configured one (or the default),
    /// lowered to what the open-file limit allows, with a warning when a
    /// configured value had to be lowered.
    pub fn effective_max_connections(&self) -> usize {
        let ceiling = connection_ceiling().unwrap_or(usize::MAX);
        match self.max_connections {
            None => DEFAULT_MAX_CONNECTIONS.min(ceiling),
            Some(wanted) if wanted > ceiling => {
                tracing::warn!(
                    configured = wanted,
                    used = ceiling,
                    "[server] max_connections is above what the open-file limit (ulimit -n) leaves room for; lowered"
                );
                ceiling
            }
            Some(wanted) => wanted.max(1),
        }
    }
}

/// PEM files of a TLS certificate chain and its private key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Failures that stop the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The certificate or key could not be loaded.
    #[error("cannot load the TLS certificate {cert} / key {key}: {source}")]
    Tls {
        /// Certificate file.
        cert: String,
        /// Key file.
        key: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("the server failed: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Clone)]
struct AppState {
    api: Arc<Api>,
    max_body_bytes: usize,
    body_pause: Duration,
    metrics: metrics::Metrics,
    free_space: Option<FreeSpaceFloor>,
}

/// The free space `/readyz` asks of the data folder's file system.
#[derive(Clone)]
struct FreeSpaceFloor {
    dir: PathBuf,
    min_bytes: u64,
}

/// The axum application.
pub fn router(api: Arc<Api>, config: &ServerConfig) -> Router {
    let free_space = match (&config.data_dir, config.min_free_disk_bytes) {
        (Some(dir), min_bytes) if min_bytes > 0 => Some(FreeSpaceFloor {
            dir: dir.clone(),
            min_bytes,
        }),
        _ => None,
    };
    let state = AppState {
        api,
        max_body_bytes: config.max_body_bytes,
        body_pause: config.idle_timeout,
        metrics: metrics::Metrics::get(),
        free_space,
    };
    let mut router = Router::new()
        .route("/", any(api_endpoint))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .route("/download/{task_id}/{name}", get(download::download));
    if config.console {
        router = router.merge(console::routes());
    }
    router
        .with_state(state)
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
}

/// Serves `router(api)` on `listener` until `shutdown` is cancelled, then
/// waits up to `config.shutdown_grace` for in-flight requests.
pub async fn run(
    listener: std::net::TcpListener,
    api: Arc<Api>,
    config: ServerConfig,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    let tls = match &config.tls {
        None => None,
        Some(files) => Some(tls_acceptor(files)?),
    };
    let limits = listener::Limits::of(&config, config.effective_max_connections());
    serve_app(listener, router(api, &config), tls, limits, shutdown).await
}

/// Serves the admin application on `listener` (plain HTTP) until
/// `shutdown` is cancelled: `GET /metrics` with everything the API
/// listener's shows plus the per-instance series, which name instances
/// and so are for the operator only. Same timeouts as the API listener,
/// at most 16 connections.
pub async fn run_admin(
    listener: std::net::TcpListener,
    api: Arc<Api>,
    config: ServerConfig,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    let limits = listener::Limits::of(&config, ADMIN_MAX_CONNECTIONS);
    serve_app(listener, admin_router(api), None, limits, shutdown).await
}

/// Serves `app` on `listener` with `limits` (and TLS when given) until
/// `shutdown` is cancelled.
async fn serve_app(
    listener: std::net::TcpListener,
    app: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: listener::Limits,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    listener::serve(listener, app, tls, limits, shutdown).await;
    Ok(())
}

/// The admin application: `/metrics` with per-instance series.
pub fn admin_router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/metrics", get(render_admin_metrics))
        .with_state(api)
}

/// A TLS acceptor of the certificate chain and key in `files`, offering
/// HTTP/2 and HTTP/1.1 by ALPN.
fn tls_acceptor(files: &TlsFiles) -> Result<tokio_rustls::TlsAcceptor, ServerError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let failed = |source: std::io::Error| ServerError::Tls {
        cert: files.cert.display().to_string(),
        key: files.key.display().to_string(),
        source,
    };
    let pem = |e: rustls::pki_types::pem::Error| std::io::Error::other(e.to_string());
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .map_err(pem)
        .map_err(failed)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem)
        .map_err(failed)?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(pem)
        .map_err(failed)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| failed(std::io::Error::other(e)))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| failed(std::io::Error::other(e)))?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(tls)))
}

/// The Tencent Cloud API 3.0 endpoint.
async fn api_endpoint(State(state): State<AppState>, request: Request) -> Response {
    let started = Instant::now();
    let reply = match read_request(request, state.max_body_bytes, state.body_pause).await {
        Ok(raw) => state.api.handle(raw).await,
        Err(error) => state.api.refuse(error),
    };
    let elapsed = started.elapsed();
    let code = reply.error.as_ref().map_or("OK", ApiError::code);
    let action = reply.action.as_deref().unwrap_or("");
    state.metrics.record(action, code, elapsed);
    // The action is as the client sent it: an unknown one may be long.
    let action = mongobak_api::error::clip(action);
    tracing::info!(
        request_id = %reply.request_id,
        action = %action,
        uin = reply.caller_uin.as_deref().unwrap_or(""),
        outcome = code,
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        "api request"
    );
    if let Some(error) = &reply.error {
        tracing::debug!(request_id = %reply.request_id, message = error.message(), "api error");
    }
    json_response(reply)
}

async fn read_request(
    request: Request,
    max_body_bytes: usize,
    pause: Duration,
) -> Result<RawRequest, ApiError> {
    let (parts, mut body) = request.into_parts();
    let too_large = || {
        ApiError::new(
            ErrorKind::RequestSizeLimitExceeded,
            format!("The request body is larger than the limit of {max_body_bytes} bytes."),
        )
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_body_bytes as u64) {
        return Err(too_large());
    }
    // Read frame by frame, each within `pause`: a client that stops
    // sending its body does not hold the connection.
    let unreadable = || {
        ApiError::new(
            ErrorKind::InvalidParameter,
            "The request body could not be read.",
        )
    };
    let mut collected = bytes::BytesMut::new();
    loop {
        let frame =
            match tokio::time::timeout(pause, http_body_util::BodyExt::frame(&mut body)).await {
                Err(_) => {
                    return Err(ApiError::new(
                        ErrorKind::InvalidParameter,
                        format!(
                            "The request body stopped arriving for {} s.",
                            pause.as_secs()
                        ),
                    ))
                }
                Ok(None) => break,
                Ok(Some(Err(_))) => return Err(unreadable()),
                Ok(Some(Ok(frame))) => frame,
            };
        if let Ok(data) = frame.into_data() {
            if collected.len() + data.len() > max_body_bytes {
                return Err(too_large());
            }
            collected.extend_from_slice(&data);
        }
    }
    let body = collected.freeze();
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| parts.uri.authority().map(|a| a.to_string()));
    Ok(RawRequest {
        method: parts.method,
        host,
        query: parts.uri.query().map(str::to_string),
        headers: parts.headers,
        body,
    })
}

fn json_response(reply: Reply) -> Response {
    let mut response = Response::new(Body::from(reply.body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A handler that panicked still answers with the standard envelope.
fn panic_response(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    json_response(Reply::refusal(ApiError::internal()))
}

/// How long `/readyz` waits for each backend to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// Ready when the metadata store and the storage both answer, each within
/// [`READY_TIMEOUT`], and the data folder's file system has the free space
/// asked for; otherwise 503 with what is missing.
async fn readyz(State(state): State<AppState>) -> Response {
    let (catalog, store, disk) = tokio::join!(
        tokio::time::timeout(READY_TIMEOUT, state.api.ping_catalog()),
        tokio::time::timeout(READY_TIMEOUT, state.api.store().check()),
        free_space_problem(state.free_space.clone()),
    );
    let missing: Vec<String> = [
        readiness_problem("metadata store", catalog),
        readiness_problem("storage", store),
        disk,
    ]
    .into_iter()
    .flatten()
    .collect();
    if missing.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{}\n", missing.join("; ")),
        )
            .into_response()
    }
}

/// What keeps `what` from being ready, after a check limited in time.
fn readiness_problem<E: std::fmt::Display>(
    what: &str,
    checked: Result<Result<(), E>, tokio::time::error::Elapsed>,
) -> Option<String> {
    let problem = match checked {
        Ok(Ok(())) => return None,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "not ready: {what} unreachable");
            "unreachable"
        }
        Err(_) => {
            tracing::warn!("not ready: the {what} does not answer");
            "does not answer"
        }
    };
    Some(format!("{what} {problem}"))
}

/// What keeps the data folder from being ready: less free space than the
/// floor, or free space that cannot be read.
async fn free_space_problem(floor: Option<FreeSpaceFloor>) -> Option<String> {
    let floor = floor?;
    let dir = floor.dir.clone();
    let free = tokio::task::spawn_blocking(move || free_bytes(&dir))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
    const MIB: u64 = 1 << 20;
    let problem = match free {
        Ok(free) if free >= floor.min_bytes => return None,
        Ok(free) => format!(
            "data folder {} has {} MiB free, below the floor of {} MiB",
            floor.dir.display(),
            free / MIB,
            floor.min_bytes.div_ceil(MIB)
        ),
        Err(e) => format!(
            "cannot read the free space of data folder {}: {e}",
            floor.dir.display()
        ),
    };
    tracing::warn!("not ready: {problem}");
    Some(problem)
}

/// Bytes an unprivileged process may still write on the file system of
/// `dir`, or of its nearest existing parent while it does not exist yet
/// (statvfs's available blocks).
fn free_bytes(dir: &std::path::Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let existing = dir
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(std::path::Path::new("."));
    let path = std::ffi::CString::new(existing.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other("the path holds a NUL byte"))?;
    // SAFETY: statvfs reads a NUL-terminated path and fills the struct it
    // is given; both live through the call.
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut stats) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
    Ok((stats.f_bavail as u64).saturating_mul(stats.f_frsize as u64))
}

async fn render_metrics(State(state): State<AppState>) -> Response {
    text_metrics(state.metrics.render())
}

/// The admin `/metrics`: the process's series and, from the catalog at
/// the time of the scrape, the stored bytes of each instance's backups.
async fn render_admin_metrics(State(api): State<Arc<Api>>) -> Response {
    let mut text = metrics::Metrics::get().render();
    match metrics::per_instance(&api).await {
        Ok(series) => text.push_str(&series),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the per-instance storage for /metrics");
        }
    }
    text_metrics(text)
}

fn text_metrics(text: String) -> Response {
    let mut response = Response::new(Body::from(text));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_cap_stays_below_the_open_file_limit() {
        let ceiling = connection_ceiling().expect("a finite open-file limit");
        let config = |max_connections| ServerConfig {
            max_connections,
            ..ServerConfig::default()
        };
        assert_eq!(
            config(None).effective_max_connections(),
            DEFAULT_MAX_CONNECTIONS.min(ceiling)
        );
        assert_eq!(
            config(Some(usize::MAX)).effective_max_connections(),
            ceiling
        );
        assert_eq!(config(Some(3)).effective_max_connections(), 3);
    }

    #[test]
    fn free_space_of_a_folder_not_made_yet() {
        let dir = tempfile::tempdir().unwrap();
        let here = free_bytes(dir.path()).unwrap();
        let later = free_bytes(&dir.path().join("not/yet")).unwrap();
        assert!(here > 0 && later > 0);
    }
}
