//! The web console: the static files of `crates/server/console/`, built
//! into the binary, served at `/console/`.
//!
//! The console is an API client like the SDKs: the page signs every call
//! to `POST /` with the user's own keys (TC3-HMAC-SHA256, in the browser),
//! so the server adds no login or session for it. Every answer here
//! carries a `Content-Security-Policy` that lets the page load nothing but
//! its own files and talk to nothing but this server, an `ETag`, and
//! `Cache-Control: no-cache`: a browser keeps the files and asks again
//! with `If-None-Match`, so an upgraded server is never shown with stale
//! files.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

/// The files, from `crates/server/console/` (built in, also in debug
/// builds).
#[derive(rust_embed::Embed)]
#[folder = "console/"]
struct Assets;

/// What every console answer allows the page: its own files and calls to
/// this server, no framing by other sites, no plugins.
const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The console's routes: `/console` redirects to `/console/`, which is
/// the page; `/console/<file>` its files.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route(
            "/console/",
            get(async |headers: HeaderMap| serve("index.html", &headers)),
        )
        .route(
            "/console/{*path}",
            get(async |Path(path): Path<String>, headers: HeaderMap| serve(&path, &headers)),
        )
}

/// The file at `path`, or 304 when the browser's copy is current, or 404.
fn serve(path: &str, request: &HeaderMap) -> Response {
    let Some(file) = Assets::get(path) else {
        return with_policy(
            (StatusCode::NOT_FOUND, "no such file in the console\n").into_response(),
        );
    };
    let etag = format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..16]));
    let current = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == etag));
    let mut response = if current {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut response = file.data.into_owned().into_response();
        if let Ok(mime) = HeaderValue::from_str(file.metadata.mimetype()) {
            response.headers_mut().insert(header::CONTENT_TYPE, mime);
        }
        response
    };
    let headers = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, etag);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    with_policy(response)
}

fn with_policy(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}
