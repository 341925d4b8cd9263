//! `GET /download/<task id>/<file name>`: the packaged file of a finished
//! download task, behind a signed, expiring URL.
//!
//! The signature and expiry are checked first (403 for a bad or expired
//! one, before anything is looked up); then the task must be done and its
//! file unexpired (404 / 410). The answer carries `Content-Length`,
//! `ETag` (the file's SHA-256), `Content-Disposition` and
//! `Accept-Ranges`; a single `Range` (also under `If-Range`) gets 206 with
//! just those bytes, so an interrupted download resumes, and an
//! `If-None-Match` naming the current ETag gets 304 without a body. The file is
//! streamed from blob storage in bounded chunks. `<file name>.sha256`
//! under the same signature answers the checksum in `sha256sum` format.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::stream;
use serde::Deserialize;

use jiff::Timestamp;
use mongobak_api::download::{DownloadRequest, Refusal};

use crate::AppState;

/// Bytes read from storage per chunk of a response.
const CHUNK: u64 = 1 << 20;

#[derive(Debug, Deserialize)]
pub(crate) struct Signed {
    expires: Option<i64>,
    signature: Option<String>,
}

pub(crate) async fn download(
    State(state): State<AppState>,
    Path((task_id, name)): Path<(i64, String)>,
    Query(signed): Query<Signed>,
    headers: HeaderMap,
) -> Response {
    let request = DownloadRequest {
        task_id,
        name: &name,
        expires: signed.expires,
        signature: signed.signature.as_deref(),
    };
    let opened = match state.api.open_download(&request, Timestamp::now()).await {
        Ok(opened) => opened,
        Err(refusal) => return refused(refusal),
    };
    if opened.checksum_only {
        return plain(StatusCode::OK, &opened.checksum_line());
    }
    let file = opened.file;
    let etag = format!("\"{}\"", file.sha256);
    // If-None-Match comes before Range (RFC 9110 §13.2.2): a client that
    // holds the current file gets 304 and nothing else.
    if none_match(&headers, &etag) {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        insert(&mut response, header::ETAG, &etag);
        insert(&mut response, header::ACCEPT_RANGES, "bytes");
        return response;
    }
    let range = match requested_range(&headers, &etag, file.size) {
        Ok(range) => range,
        Err(()) => {
            let mut response = plain(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable\n");
            insert(
                &mut response,
                header::CONTENT_RANGE,
                &format!("bytes */{}", file.size),
            );
            return response;
        }
    };
    let (start, end, status) = match range {
        Some((start, end)) => (start, end, StatusCode::PARTIAL_CONTENT),
        None => (0, file.size, StatusCode::OK),
    };
    let store = state.api.store().clone();
    let path = file.path.clone();
    let body = stream::try_unfold(start, move |offset| {
        let store = store.clone();
        let path = path.clone();
        async move {
            if offset >= end {
                return Ok(None);
            }
            let len = CHUNK.min(end - offset);
            let chunk = store.get_range(&path, offset, len).await.map_err(|e| {
                tracing::error!(path = %path, error = %e, "cannot read a download file");
                std::io::Error::other("storage read failed")
            })?;
            Ok::<_, std::io::Error>(Some((chunk, offset + len)))
        }
    });
    let mut response = Response::new(Body::from_stream(body));
    *response.status_mut() = status;
    insert(&mut response, header::CONTENT_TYPE, "application/gzip");
    insert(
        &mut response,
        header::CONTENT_LENGTH,
        &(end - start).to_string(),
    );
    insert(&mut response, header::ETAG, &etag);
    insert(&mut response, header::ACCEPT_RANGES, "bytes");
    insert(
        &mut response,
        header::CONTENT_DISPOSITION,
        &format!("attachment; filename=\"{}\"", file.name()),
    );
    if status == StatusCode::PARTIAL_CONTENT {
        insert(
            &mut response,
            header::CONTENT_RANGE,
            &format!("bytes {start}-{}/{}", end - 1, file.size),
        );
    }
    metrics::counter!("mongobak_download_bytes_total").increment(end - start);
    response
}

/// The answer to a URL that is not served.
fn refused(refusal: Refusal) -> Response {
    match refusal {
        Refusal::BadLink => plain(
            StatusCode::FORBIDDEN,
            "the download link is invalid or has expired\n",
        ),
        Refusal::NotFound => plain(StatusCode::NOT_FOUND, "no such download\n"),
        Refusal::Gone => plain(
            StatusCode::GONE,
            "the file has expired; create the download task again\n",
        ),
        Refusal::Unavailable => plain(StatusCode::SERVICE_UNAVAILABLE, "try again later\n"),
    }
}

/// The byte range `[start, end)` a request asks for: `None` for the whole
/// file (no `Range`, several ranges, or an `If-Range` that does not match),
/// `Err` for a range outside the file or one that cannot be read.
///
/// Every position is a `u64` and every step is checked: a last position
/// past the end (up to `u64::MAX`, or more digits than a `u64` holds)
/// means the end of the file, and a suffix longer than the file means all
/// of it (RFC 9110 §14.1.2).
fn requested_range(headers: &HeaderMap, etag: &str, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(range) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    if let Some(if_range) = headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) {
        if if_range != etag {
            return Ok(None);
        }
    }
    let Some(spec) = range.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (first, last) = spec.split_once('-').ok_or(())?;
    let (first, last) = (first.trim(), last.trim());
    let (start, end) = match (first.is_empty(), last.is_empty()) {
        (false, true) => (position(first)?, size),
        (false, false) => {
            let start = position(first)?;
            let last = position(last)?;
            if last < start {
                return Err(());
            }
            // `last` is at most u64::MAX, so `last + 1` saturates only
            // where the file ends earlier anyway.
            (start, last.saturating_add(1).min(size))
        }
        (true, false) => {
            let suffix = position(last)?;
            if suffix == 0 {
                return Err(());
            }
            (size.saturating_sub(suffix), size)
        }
        (true, true) => return Err(()),
    };
    if start >= size {
        return Err(());
    }
    Ok(Some((start, end)))
}

/// A byte position of a `Range` header: ASCII digits only (no sign, no
/// spaces), at most `u64::MAX`; a longer number is `u64::MAX`, past the
/// end of any file.
fn position(digits: &str) -> Result<u64, ()> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(());
    }
    Ok(digits
        .bytes()
        .try_fold(0u64, |n, digit| {
            n.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
        })
        .unwrap_or(u64::MAX))
}

/// Whether an `If-None-Match` value names `etag` (or is `*`): the weak
/// comparison of RFC 9110 §13.1.2, so `W/"x"` matches `"x"`.
fn none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

fn plain(status: StatusCode, text: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text.to_string(),
    )
        .into_response()
}

fn insert(response: &mut Response, name: header::HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(range: &str, if_range: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_str(range).unwrap());
        if let Some(v) = if_range {
            h.insert(header::IF_RANGE, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn ranges() {
        let tag = "\"abc\"";
        assert_eq!(requested_range(&HeaderMap::new(), tag, 100), Ok(None));
        assert_eq!(
            requested_range(&headers("bytes=10-", None), tag, 100),
            Ok(Some((10, 100)))
        );
        assert_eq!(
            requested_range(&headers("bytes=10-19", None), tag, 100),
            Ok(Some((10, 20)))
        );
        assert_eq!(
            requested_range(&headers("bytes=90-200", None), tag, 100),
            Ok(Some((90, 100)))
        );
        assert_eq!(
            requested_range(&headers("bytes=-10", None), tag, 100),
            Ok(Some((90, 100)))
        );
        assert_eq!(
            requested_range(&headers("bytes=-500", None), tag, 100),
            Ok(Some((0, 100)))
        );
        assert_eq!(
            requested_range(&headers("bytes=100-", None), tag, 100),
            Err(())
        );
        assert_eq!(
            requested_range(&headers("bytes=20-10", None), tag, 100),
            Err(())
        );
        assert_eq!(
            requested_range(&headers("bytes=-0", None), tag, 100),
            Err(())
        );
        assert_eq!(
            requested_range(&headers("bytes=x-", None), tag, 100),
            Err(())
        );
        assert_eq!(
            requested_range(&headers("bytes=0-1,5-6", None), tag, 100),
            Ok(None)
        );
        assert_eq!(
            requested_range(&headers("items=0-1", None), tag, 100),
            Ok(None)
        );
        assert_eq!(
            requested_range(&headers("bytes=10-", Some(tag)), tag, 100),
            Ok(Some((10, 100)))
        );
        assert_eq!(
            requested_range(&headers("bytes=10-", Some("\"old\"")), tag, 100),
            Ok(None)
        );
    }

    #[test]
    fn ranges_at_the_u64_limits() {
        let tag = "\"abc\"";
        let max = u64::MAX;
        let range = |spec: &str, size| requested_range(&headers(spec, None), tag, size);
        assert_eq!(range(&format!("bytes=5-{max}"), 100), Ok(Some((5, 100))));
        assert_eq!(range(&format!("bytes=0-{max}"), 100), Ok(Some((0, 100))));
        assert_eq!(
            range(&format!("bytes=0-{}", max - 1), max),
            Ok(Some((0, max)))
        );
        assert_eq!(range(&format!("bytes={max}-{max}"), max), Err(()));
        assert_eq!(
            range(&format!("bytes={}-", max - 1), max),
            Ok(Some((max - 1, max)))
        );
        assert_eq!(range(&format!("bytes=-{max}"), 100), Ok(Some((0, 100))));
        assert_eq!(
            range("bytes=5-99999999999999999999999", 100),
            Ok(Some((5, 100)))
        );
        assert_eq!(
            range("bytes=-99999999999999999999999", 100),
            Ok(Some((0, 100)))
        );
        assert_eq!(range("bytes=99999999999999999999999-", 100), Err(()));
        assert_eq!(range("bytes=+5-10", 100), Err(()));
        assert_eq!(range("bytes=0-", 0), Err(()));
        assert_eq!(range("bytes=-1", 0), Err(()));
    }

    #[test]
    fn if_none_match() {
        let tag = "\"abc\"";
        let with = |value: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::IF_NONE_MATCH, HeaderValue::from_str(value).unwrap());
            none_match(&h, tag)
        };
        assert!(!none_match(&HeaderMap::new(), tag));
        assert!(with("\"abc\""));
        assert!(with("W/\"abc\""));
        assert!(with("\"old\", \"abc\""));
        assert!(with("*"));
        assert!(!with("\"old\""));
        assert!(!with("abc"));
    }
}
