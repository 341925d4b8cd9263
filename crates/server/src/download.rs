//! `GET /download/<task id>/<file name>`: the packaged file of a finished
//! download task, behind a signed, expiring URL.
//!
//! The signature and expiry are checked first (403 for a bad or expired
//! one, before anything is looked up); then the task must be done and its
//! file unexpired (404 / 410). The answer carries `Content-Length`,
//! `ETag` (the file's SHA-256), `Content-Disposition` and
//! `Accept-Ranges`; a single `Range` (also under `If-Range`) gets 206 with
//! just those bytes, so an interrupted download resumes. The file is
//! streamed from blob storage in bounded chunks. `<file name>.sha256`
//! under the same signature answers the checksum in `sha256sum` format.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::stream;
use serde::Deserialize;

use mongobak_catalog::TaskStatus;

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
    let (file_name, checksum_only) = match name.strip_suffix(".sha256") {
        Some(base) => (base.to_string(), true),
        None => (name.clone(), false),
    };
    let settings = state.api.download_settings();
    let now = jiff::Timestamp::now().as_second();
    let valid = match (signed.expires, signed.signature.as_deref()) {
        (Some(expires), Some(signature)) => {
            expires >= now
                && settings
                    .signer
                    .verify(task_id, &file_name, expires, signature)
        }
        _ => false,
    };
    if !valid {
        return plain(
            StatusCode::FORBIDDEN,
            "the download link is invalid or has expired\n",
        );
    }
    let task = match state.api.catalog().download_task(task_id).await {
        Ok(Some(task)) => task,
        Ok(None) => return plain(StatusCode::NOT_FOUND, "no such download\n"),
        Err(e) => {
            tracing::error!(task_id, error = %e, "cannot read a download task");
            return plain(StatusCode::SERVICE_UNAVAILABLE, "try again later\n");
        }
    };
    let file = match (&task.status, &task.file) {
        (TaskStatus::Done, Some(file))
            if file.path.rsplit('/').next() == Some(file_name.as_str()) =>
        {
            file.clone()
        }
        _ => return plain(StatusCode::NOT_FOUND, "no such download\n"),
    };
    if file.expires_at.as_second() <= now {
        return plain(
            StatusCode::GONE,
            "the file has expired; create the download task again\n",
        );
    }
    if checksum_only {
        return plain(StatusCode::OK, &format!("{}  {file_name}\n", file.sha256));
    }
    let etag = format!("\"{}\"", file.sha256);
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
        &format!("attachment; filename=\"{file_name}\""),
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

/// The byte range `[start, end)` a request asks for: `None` for the whole
/// file (no `Range`, several ranges, or an `If-Range` that does not match),
/// `Err` for a range outside the file.
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
        (false, true) => (first.parse::<u64>().map_err(drop)?, size),
        (false, false) => {
            let start = first.parse::<u64>().map_err(drop)?;
            let last = last.parse::<u64>().map_err(drop)?;
            if last < start {
                return Err(());
            }
            (start, (last + 1).min(size))
        }
        (true, false) => {
            let suffix = last.parse::<u64>().map_err(drop)?;
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
}
