//! The HTTP side of mongobak: an axum application around [`mongobak_api::Api`].
//!
//! Routes:
//! * `GET|POST /`: Tencent Cloud API 3.0. Every answer, errors included, is
//!   HTTP 200 with `Content-Type: application/json` exactly: the Python SDK
//!   only looks for an `Error` under that exact type (protocol reference §3).
//! * `GET /healthz`: the process is up.
//! * `GET /readyz`: the metadata store and the blob storage answer.
//! * `GET /metrics`: Prometheus text (requests by action and code, latency).
//! * `GET /download/<task>/<file>`: a packaged download file behind a
//!   signed, expiring URL, with `Range` support ([`download`]).
//!
//! [`run`] serves a bound listener until a cancellation token fires, then
//! lets in-flight requests finish (graceful shutdown), over plain HTTP or
//! TLS (rustls). Tests bind `127.0.0.1:0` and call it in-process.

#![deny(missing_docs)]

mod download;
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
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_body_bytes: 10 * 1024 * 1024,
            tls: None,
            shutdown_grace: Duration::from_secs(30),
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
    metrics: metrics::Metrics,
}

/// The axum application.
pub fn router(api: Arc<Api>, config: &ServerConfig) -> Router {
    let state = AppState {
        api,
        max_body_bytes: config.max_body_bytes,
        metrics: metrics::Metrics::get(),
    };
    Router::new()
        .route("/", any(api_endpoint))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .route("/download/{task_id}/{name}", get(download::download))
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
    listener.set_nonblocking(true)?;
    let app = router(api, &config).into_make_service();
    match &config.tls {
        None => {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await?;
        }
        Some(files) => {
            // One process-wide crypto provider; installing twice is harmless.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(&files.cert, &files.key)
                .await
                .map_err(|source| ServerError::Tls {
                    cert: files.cert.display().to_string(),
                    key: files.key.display().to_string(),
                    source,
                })?;
            let handle = axum_server::Handle::new();
            let stopper = handle.clone();
            let grace = config.shutdown_grace;
            tokio::spawn(async move {
                shutdown.cancelled().await;
                stopper.graceful_shutdown(Some(grace));
            });
            axum_server::from_tcp_rustls(listener, tls)
                .handle(handle)
                .serve(app)
                .await?;
        }
    }
    Ok(())
}

/// The Tencent Cloud API 3.0 endpoint.
async fn api_endpoint(State(state): State<AppState>, request: Request) -> Response {
    let started = Instant::now();
    let reply = match read_request(request, state.max_body_bytes).await {
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

async fn read_request(request: Request, max_body_bytes: usize) -> Result<RawRequest, ApiError> {
    let (parts, body) = request.into_parts();
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
    let body = axum::body::to_bytes(body, max_body_bytes)
        .await
        .map_err(|e| {
            let over_limit = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if over_limit {
                too_large()
            } else {
                ApiError::new(
                    ErrorKind::InvalidParameter,
                    "The request body could not be read.",
                )
            }
        })?;
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
    let request_id = uuid::Uuid::new_v4().to_string();
    let body = serde_json::json!({
        "Response": {
            "Error": {"Code": "InternalError", "Message": "An internal error occurred; the server log has the details."},
            "RequestId": request_id,
        }
    });
    let mut response = Response::new(Body::from(body.to_string()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// How long `/readyz` waits for each backend to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// Ready when the metadata store and the storage both answer, each within
/// [`READY_TIMEOUT`]; otherwise 503 with what is missing.
async fn readyz(State(state): State<AppState>) -> Response {
    let (catalog, store) = tokio::join!(
        tokio::time::timeout(READY_TIMEOUT, state.api.catalog().ping()),
        tokio::time::timeout(READY_TIMEOUT, state.api.store().check()),
    );
    let missing: Vec<String> = [
        readiness_problem("metadata store", catalog),
        readiness_problem("storage", store),
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

async fn render_metrics(State(state): State<AppState>) -> Response {
    let mut response = Response::new(Body::from(state.metrics.render()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}
