//! Following a replica set's oplog for continuous backup: every entry after
//! a saved position, once each and in order, and word when the position
//! has already left the source's oplog.
//!
//! A tailable, awaiting cursor on `local.oplog.rs` from the saved position
//! is the whole story on MongoDB. Some servers (SecantusDB among them) drop
//! the entries committed while such a cursor is being opened, so
//! [`OplogTail::open`] opens a plain query of the same entries after the
//! cursor is open (the re-read). [`OplogTail::next_batch`] hands over the
//! re-read first, read as it goes (at most a batch at a time, so a tail
//! opened far behind holds no more than a batch and the server's cursor
//! buffer in memory), then the tailable cursor, passing over the cursor's
//! copies of the entries the re-read handed over (told apart by their
//! exact bytes). After that the cursor is trusted: a server only shows a
//! tailing cursor entries up to the point where every earlier write is
//! visible.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use futures::StreamExt;
use mongodb::bson::{doc, RawDocumentBuf, Timestamp};
use mongodb::options::CursorType;
use mongodb::Cursor;

use crate::replica_set::ReplicaSetSource;
use crate::stored::format::OplogTime;
use crate::DumpError;

/// One oplog entry as the source stored it.
#[derive(Debug, Clone, PartialEq)]
pub struct OplogEntry {
    /// Its position.
    pub ts: OplogTime,
    /// When it was written (`wall`, Unix milliseconds; from `ts` when the
    /// server sends none).
    pub wall_millis: i64,
    /// A no-op (`op: "n"`): nothing to replay.
    pub is_noop: bool,
    /// The entry, byte for byte.
    pub raw: RawDocumentBuf,
}

impl OplogEntry {
    fn parse(raw: RawDocumentBuf) -> Result<Self, String> {
        let ts = raw
            .get_timestamp("ts")
            .map_err(|e| format!("an oplog entry has no timestamp: {e}"))?;
        let wall_millis = match raw.get_datetime("wall") {
            Ok(wall) => wall.timestamp_millis(),
            Err(_) => i64::from(ts.time) * 1000,
        };
        let is_noop = raw.get_str("op").is_ok_and(|op| op == "n");
        Ok(OplogEntry {
            ts: ts.into(),
            wall_millis,
            is_noop,
            raw,
        })
    }
}

/// Where a tail starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TailStart {
    /// Right after the position asked for: nothing was lost.
    Continues,
    /// The source's oplog no longer reaches back to the position asked
    /// for: entries up to `oldest` (exclusive) may be lost, and the tail
    /// starts after `oldest`.
    Lost {
        /// The oldest entry the source still has.
        oldest: OplogTime,
        /// When it was written (Unix milliseconds).
        oldest_wall_millis: i64,
    },
}

/// An open tail of one replica set's oplog: the plain re-read of what was
/// committed at open, consumed lazily by [`next_batch`](Self::next_batch),
/// then the tailable cursor.
pub struct OplogTail {
    source: ReplicaSetSource,
    /// The tailable cursor, read once the re-read is exhausted.
    cursor: Cursor<RawDocumentBuf>,
    /// The plain query opened after the tailable cursor, handed over first;
    /// `None` once exhausted.
    reread: Option<Cursor<RawDocumentBuf>>,
    /// Entries handed over from the re-read so far.
    reread_count: u64,
    /// How many times each entry handed over from the re-read (by a hash
    /// of its bytes) may still come again through the tailable cursor, to
    /// be passed over. Complete by the time the tailable cursor is read,
    /// since that only starts once the re-read is exhausted.
    repeats: HashMap<u64, u32>,
    /// Wait of one empty poll of the cursor.
    await_time: Duration,
    /// The position the tail follows on from.
    started_after: OplogTime,
}

impl OplogTail {
    /// Connects to the replica set at `uri` and opens a tail of the
    /// entries after `after` (all entries after the newest one when `after`
    /// is [`OplogTime::ZERO`]: a first start keeps no history).
    pub async fn open(
        replica_set_id: &str,
        uri: &str,
        after: OplogTime,
        await_time: Duration,
    ) -> Result<(OplogTail, TailStart), DumpError> {
        let source = ReplicaSetSource::connect(replica_set_id, uri).await?;
        let oplog = source.oplog_collection();
        let mut start = TailStart::Continues;
        let mut after = after;
        if after == OplogTime::ZERO {
            after = source.oplog_start;
        } else {
            let oldest = oplog
                .find_one(doc! {})
                .sort(doc! {"$natural": 1})
                .await
                .map_err(source.mongo_error("reading the oldest oplog entry"))?;
            if let Some(oldest) = oldest {
                let oldest = OplogEntry::parse(oldest).map_err(|detail| source.corrupt(detail))?;
                if oldest.ts > after {
                    start = TailStart::Lost {
                        oldest: oldest.ts,
                        oldest_wall_millis: oldest.wall_millis,
                    };
                    after = oldest.ts;
                }
            }
        }
        let filter = doc! {"ts": {"$gt": Timestamp::from(after)}};
        let cursor = oplog
            .find(filter.clone())
            .cursor_type(CursorType::TailableAwait)
            .max_await_time(await_time)
            .batch_size(1000)
            .await
            .map_err(source.mongo_error("opening a tailable cursor on the oplog"))?;
        // Everything committed by now, whatever the cursor's opening missed;
        // read by `next_batch` as it goes.
        let reread = oplog
            .find(filter)
            .sort(doc! {"$natural": 1})
            .batch_size(1000)
            .await
            .map_err(source.mongo_error("reading the oplog"))?;
        tracing::info!(
            replica_set = replica_set_id,
            after = ?after,
            lost = matches!(start, TailStart::Lost { .. }),
            "oplog tail opened"
        );
        Ok((
            OplogTail {
                source,
                cursor,
                reread: Some(reread),
                reread_count: 0,
                repeats: HashMap::new(),
                await_time,
                started_after: after,
            },
            start,
        ))
    }

    /// The position the tail follows on from: the one asked for, the
    /// newest entry at open for a first start, or the oldest entry the
    /// source still has when the one asked for was [lost](TailStart::Lost).
    pub fn started_after(&self) -> OplogTime {
        self.started_after
    }

    /// The next entries, in order: at most `max` of them, waiting up to
    /// about the cursor's await time when there are none (then empty).
    /// Entries come from the re-read until it is exhausted, then from the
    /// tailable cursor.
    pub async fn next_batch(&mut self, max: usize) -> Result<Vec<OplogEntry>, DumpError> {
        let batch = self.next_reread(max).await?;
        if !batch.is_empty() {
            return Ok(batch);
        }
        let mut batch = Vec::new();
        // The first entry may take a whole await; the rest of the batch
        // only what has already arrived.
        let mut wait = self.await_time + Duration::from_secs(1);
        while batch.len() < max {
            let next = match tokio::time::timeout(wait, self.cursor.next()).await {
                Err(_elapsed) => break,
                Ok(None) => {
                    return Err(self
                        .source
                        .corrupt("the server closed the tailable cursor on the oplog".to_string()))
                }
                Ok(Some(next)) => next.map_err(self.source.mongo_error("tailing the oplog"))?,
            };
            wait = Duration::from_millis(1);
            if !self.repeats.is_empty() {
                let hash = hash_of(&next);
                if let Some(left) = self.repeats.get_mut(&hash) {
                    *left -= 1;
                    if *left == 0 {
                        self.repeats.remove(&hash);
                    }
                    continue;
                }
            }
            batch.push(OplogEntry::parse(next).map_err(|detail| self.source.corrupt(detail))?);
        }
        Ok(batch)
    }

    /// At most `max` entries of the re-read, each recorded in `repeats`;
    /// empty once it is exhausted.
    async fn next_reread(&mut self, max: usize) -> Result<Vec<OplogEntry>, DumpError> {
        let Some(reread) = self.reread.as_mut() else {
            return Ok(Vec::new());
        };
        let mut batch = Vec::new();
        while batch.len() < max {
            let Some(raw) = reread.next().await else {
                tracing::info!(
                    replica_set = %self.source.id,
                    entries = self.reread_count + batch.len() as u64,
                    "oplog re-read done; tailing"
                );
                self.reread = None;
                break;
            };
            let raw = raw.map_err(self.source.mongo_error("reading the oplog"))?;
            *self.repeats.entry(hash_of(&raw)).or_insert(0) += 1;
            batch.push(OplogEntry::parse(raw).map_err(|detail| self.source.corrupt(detail))?);
        }
        self.reread_count += batch.len() as u64;
        Ok(batch)
    }

    /// The oldest entry the source still has; a tail whose last entry is
    /// older has lost entries (the oplog was truncated past it). Takes the
    /// tail mutably, as every use of it: a tail may move between threads
    /// but not be shared by them.
    pub async fn oldest(&mut self) -> Result<Option<OplogTime>, DumpError> {
        let oldest = self
            .source
            .oplog_collection()
            .find_one(doc! {})
            .sort(doc! {"$natural": 1})
            .await
            .map_err(self.source.mongo_error("reading the oldest oplog entry"))?;
        oldest
            .map(|raw| OplogEntry::parse(raw).map(|entry| entry.ts))
            .transpose()
            .map_err(|detail| self.source.corrupt(detail))
    }
}

fn hash_of(raw: &RawDocumentBuf) -> u64 {
    let mut hasher = DefaultHasher::new();
    raw.as_bytes().hash(&mut hasher);
    hasher.finish()
}
