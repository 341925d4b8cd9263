//! Range and conditional requests on a real packaged download file: a
//! backup of a SecantusDB server, packaged by the download worker and
//! served by the real router on a real socket. Arbitrary ranges, the u64
//! extremes among them, are compared with a small model of RFC 9110's
//! byte ranges; `If-None-Match` with the current ETag answers 304.

mod common;

use common::*;
use mongobak_testkit::{seed, MongoServer};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::json;

/// A position in a generated `Range` header.
#[derive(Debug, Clone)]
enum Pos {
    Num(u64),
    /// More digits than a u64 holds.
    Huge,
}

impl Pos {
    fn text(&self) -> String {
        match self {
            Pos::Num(n) => n.to_string(),
            Pos::Huge => "123456789012345678901234567890".into(),
        }
    }

    fn value(&self) -> u128 {
        match self {
            Pos::Num(n) => u128::from(*n),
            Pos::Huge => 123_456_789_012_345_678_901_234_567_890,
        }
    }
}

/// Positions around the file's size and at the u64 extremes.
fn position(size: u64) -> impl Strategy<Value = Pos> {
    prop_oneof![
        (0..=size + 2).prop_map(Pos::Num),
        Just(Pos::Num(0)),
        Just(Pos::Num(size.saturating_sub(1))),
        Just(Pos::Num(u64::MAX)),
        Just(Pos::Num(u64::MAX - 1)),
        Just(Pos::Num(1 << 63)),
        any::<u64>().prop_map(Pos::Num),
        Just(Pos::Huge),
    ]
}

/// `first-last`, `first-` or `-suffix`.
fn spec(size: u64) -> impl Strategy<Value = (Option<Pos>, Option<Pos>)> {
    prop_oneof![
        (position(size), position(size)).prop_map(|(a, b)| (Some(a), Some(b))),
        position(size).prop_map(|a| (Some(a), None)),
        position(size).prop_map(|b| (None, Some(b))),
    ]
}

/// The model: the bytes `[start, end)` a range selects, or `None` when it
/// is not satisfiable (416). Computed in u128, so nothing overflows.
fn model(size: u64, first: Option<&Pos>, last: Option<&Pos>) -> Option<(u64, u64)> {
    let size128 = u128::from(size);
    let (start, end) = match (first, last) {
        (Some(f), None) => (f.value(), size128),
        (Some(f), Some(l)) => {
            if l.value() < f.value() {
                return None;
            }
            (f.value(), (l.value() + 1).min(size128))
        }
        (None, Some(n)) => {
            if n.value() == 0 {
                return None;
            }
            (size128 - n.value().min(size128), size128)
        }
        (None, None) => return None,
    };
    if start >= size128 {
        return None;
    }
    Some((start as u64, end as u64))
}

async fn packaged_file(server: &TestServer) -> String {
    let backup = server.take_backup().await;
    let created = server
        .call(
            "CreateBackupDownloadTask",
            json!({"InstanceId": INSTANCE, "BackupName": backup,
                   "BackupSets": [{"ReplicaSetId": format!("{INSTANCE}_0")}]}),
        )
        .await;
    assert_eq!(code_of(&created), None, "{created}");
    let task = server.wait_download(&backup).await;
    task["Url"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_and_conditional_requests_on_a_packaged_file() {
    let mongo = MongoServer::start().await;
    seed::seed(&mongo.client()).await.unwrap();
    let server = TestServer::start_with_mongo(&mongo.uri()).await;
    let url = packaged_file(&server).await;
    let http = server.http.clone();

    let whole = server.get(&url, &[]).await;
    assert_eq!(whole.status, 200);
    let body = whole.body.clone();
    let size = body.len() as u64;
    let etag = whole.header("etag").expect("an ETag").to_string();

    // The two cases of the issue, spelled out.
    let max = u64::MAX;
    let tail = server
        .get(&url, &[("range", &format!("bytes=5-{max}"))])
        .await;
    assert_eq!(tail.status, 206);
    assert_eq!(
        tail.header("content-range"),
        Some(format!("bytes 5-{}/{size}", size - 1).as_str())
    );
    assert_eq!(tail.body, &body[5..]);
    let all = server
        .get(&url, &[("range", &format!("bytes=0-{max}"))])
        .await;
    assert_eq!(all.status, 206);
    assert_eq!(
        all.header("content-range"),
        Some(format!("bytes 0-{}/{size}", size - 1).as_str())
    );
    assert_eq!(all.body, body);

    // Conditional GET: the current ETag gives 304 and no body, whatever
    // the Range; another tag gives the file.
    let other_or_weak = format!("\"other\", W/{etag}");
    for headers in [
        &[("if-none-match", etag.as_str())][..],
        &[("if-none-match", other_or_weak.as_str())],
        &[("if-none-match", "*")],
        &[("if-none-match", etag.as_str()), ("range", "bytes=0-9")],
    ] {
        let not_modified = server.get(&url, headers).await;
        assert_eq!(not_modified.status, 304, "{headers:?}");
        assert!(not_modified.body.is_empty());
        assert_eq!(not_modified.header("etag"), Some(etag.as_str()));
    }
    let changed = server.get(&url, &[("if-none-match", "\"other\"")]).await;
    assert_eq!(changed.status, 200);
    assert_eq!(changed.body, body);

    // Arbitrary ranges against the model, through the endpoint.
    let runtime = tokio::runtime::Handle::current();
    let cases: u32 = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    tokio::task::spawn_blocking(move || {
        let mut runner = TestRunner::new(Config::with_cases(cases));
        runner
            .run(&spec(size), |(first, last)| {
                let header = format!(
                    "bytes={}-{}",
                    first.as_ref().map(Pos::text).unwrap_or_default(),
                    last.as_ref().map(Pos::text).unwrap_or_default()
                );
                let answer = runtime
                    .block_on(http.get_with(&url, &[("range", &header)]))
                    .unwrap_or_else(|e| panic!("GET {url}: {e}"));
                match model(size, first.as_ref(), last.as_ref()) {
                    Some((start, end)) => {
                        prop_assert_eq!(answer.status, 206, "{}", header);
                        let expected = format!("bytes {start}-{}/{size}", end - 1);
                        prop_assert_eq!(answer.header("content-range"), Some(expected.as_str()));
                        let length = (end - start).to_string();
                        prop_assert_eq!(answer.header("content-length"), Some(length.as_str()));
                        if answer.body != body[start as usize..end as usize] {
                            return Err(TestCaseError::fail(format!("{header}: other bytes")));
                        }
                    }
                    None => {
                        prop_assert_eq!(answer.status, 416, "{}", header);
                        let expected = format!("bytes */{size}");
                        prop_assert_eq!(answer.header("content-range"), Some(expected.as_str()));
                    }
                }
                Ok(())
            })
            .unwrap();
    })
    .await
    .unwrap();
}
