//! The oplog tail against a real server: opened from a saved position while
//! a writer runs, it hands over every later entry exactly once and in
//! order; opened from a position the server's oplog no longer reaches, it
//! says so.

use std::time::{Duration, Instant};

use mongobak_dump::format::OplogTime;
use mongobak_dump::tail::{OplogEntry, OplogTail, TailStart};
use mongobak_testkit::MongoServer;
use mongodb::bson::{doc, Document, RawDocumentBuf};
use mongodb::Client;

const AWAIT: Duration = Duration::from_millis(500);

/// The position of the insert of `{n}` into `tail.seq`.
async fn position_of_insert(client: &Client, n: i64) -> OplogTime {
    let entry = client
        .database("local")
        .collection::<Document>("oplog.rs")
        .find_one(doc! {"op": "i", "ns": "tail.seq", "o.n": n})
        .await
        .unwrap()
        .expect("the insert is in the oplog");
    entry.get_timestamp("ts").unwrap().into()
}

/// The `n` of an insert into `tail.seq`, if `entry` is one.
fn inserted_n(entry: &OplogEntry) -> Option<i64> {
    let raw: &RawDocumentBuf = &entry.raw;
    if raw.get_str("op").ok()? != "i" || raw.get_str("ns").ok()? != "tail.seq" {
        return None;
    }
    raw.get_document("o").ok()?.get_i64("n").ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tail_opened_during_writes_hands_over_every_entry_once_in_order() {
    let server = MongoServer::start().await;
    let client = Client::with_uri_str(server.uri()).await.unwrap();
    let seq = client.database("tail").collection::<Document>("seq");
    for n in 0..200_i64 {
        seq.insert_one(doc! {"n": n}).await.unwrap();
    }
    let saved = position_of_insert(&client, 49).await;
    // A long oplog makes opening a cursor slow enough for writes to land
    // while it opens.
    let bulk: Vec<Document> = (0..30_000_i64).map(|n| doc! {"bulk": n}).collect();
    let other = client.database("tail").collection::<Document>("bulk");
    other.insert_many(bulk).await.unwrap();

    // A writer keeps going while the tail opens (the moment some servers
    // drop entries).
    let writer = tokio::spawn({
        let seq = seq.clone();
        async move {
            for n in 200..1_200_i64 {
                seq.insert_one(doc! {"n": n}).await.unwrap();
            }
        }
    });
    let (mut tail, start) = OplogTail::open("cmgo-tail0001_0", &server.uri(), saved, AWAIT)
        .await
        .unwrap();
    assert_eq!(start, TailStart::Continues);

    let mut seen = Vec::new();
    let mut last = saved;
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen.last() != Some(&1_199) {
        assert!(Instant::now() < deadline, "saw {} entries", seen.len());
        for entry in tail.next_batch(500).await.unwrap() {
            assert!(
                entry.ts >= last,
                "{:?} after {last:?}: out of order",
                entry.ts
            );
            last = entry.ts;
            seen.extend(inserted_n(&entry));
        }
    }
    writer.await.unwrap();
    let expected: Vec<i64> = (50..1_200).collect();
    assert_eq!(seen, expected, "every insert after the saved one, once");

    // Idle: an empty batch after about the await time, no error.
    let started = Instant::now();
    let idle = tail.next_batch(500).await.unwrap();
    assert!(idle.iter().all(|e| inserted_n(e).is_none()));
    assert!(started.elapsed() < AWAIT + Duration::from_secs(3));
    // And a write after the quiet spell still arrives.
    seq.insert_one(doc! {"n": 5_000_i64}).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "the late write never arrived");
        let batch = tail.next_batch(500).await.unwrap();
        if batch.iter().any(|e| inserted_n(e) == Some(5_000)) {
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_the_oplog_no_longer_reaches_is_reported_lost() {
    let server = MongoServer::start_with(&["--oplog-max-entries", "1000"]).await;
    let client = Client::with_uri_str(server.uri()).await.unwrap();
    let seq = client.database("tail").collection::<Document>("seq");
    for n in 0..20_i64 {
        seq.insert_one(doc! {"n": n}).await.unwrap();
    }
    let saved = position_of_insert(&client, 10).await;
    // Enough writes for the server to cut its oplog to its cap.
    let batch: Vec<Document> = (20..3_020_i64).map(|n| doc! {"n": n}).collect();
    seq.insert_many(batch).await.unwrap();

    let (mut tail, start) = OplogTail::open("cmgo-tail0002_0", &server.uri(), saved, AWAIT)
        .await
        .unwrap();
    let TailStart::Lost { oldest, .. } = start else {
        panic!("the loss went unnoticed: {start:?}");
    };
    assert!(oldest > saved);
    assert_eq!(tail.oldest().await.unwrap(), Some(oldest));
    // The tail goes on after the oldest entry the server still has.
    let first = tail.next_batch(10).await.unwrap();
    assert!(!first.is_empty());
    assert!(first[0].ts > oldest);
}
