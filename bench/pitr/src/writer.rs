//! The write load: a mix of inserts, updates, replacements and deletes of
//! ~1 KB documents (`orders` of the benchmarks' generator), one write per
//! oplog entry, by several tasks at once, each on documents of its own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use bench_support::documents::{generate, Rng};
use futures::future::try_join_all;
use mongodb::bson::{doc, Document};
use mongodb::Collection;

/// Live documents a task keeps before it updates or deletes any.
const MIN_LIVE: usize = 50;
/// Documents per `insert_many` of a backlog.
const BACKLOG_BATCH: usize = 1000;

/// How a load ends.
#[derive(Debug, Clone, Copy)]
pub enum Until {
    /// At this moment.
    Deadline(Instant),
    /// After this many writes in all.
    Writes(u64),
}

/// Counts of the writes done, by kind.
#[derive(Debug, Default)]
pub struct Done {
    /// Writes of every kind.
    pub total: AtomicU64,
    /// Inserts.
    pub inserts: AtomicU64,
    /// `$set`/`$inc` updates.
    pub updates: AtomicU64,
    /// Whole-document replacements.
    pub replaces: AtomicU64,
    /// Deletes.
    pub deletes: AtomicU64,
}

impl Done {
    /// "N inserts, N updates, N replacements, N deletes".
    pub fn mix(&self) -> String {
        format!(
            "{} inserts, {} updates, {} replacements, {} deletes",
            self.inserts.load(Ordering::Relaxed),
            self.updates.load(Ordering::Relaxed),
            self.replaces.load(Ordering::Relaxed),
            self.deletes.load(Ordering::Relaxed)
        )
    }
}

/// One writing task: its own `_id` range, its live documents.
struct Writer {
    coll: Collection<Document>,
    /// The first `_id` of this task.
    base: i64,
    next: i64,
    live: Vec<i64>,
    /// Choices (xorshift64*).
    state: u64,
    /// The documents' generator.
    documents: Rng,
}

impl Writer {
    fn new(coll: Collection<Document>, task: u64, seed: u64) -> Writer {
        Writer {
            coll,
            base: (seed as i64 % 1000) * 1_000_000_000_000 + task as i64 * 1_000_000_000,
            next: 0,
            live: Vec::new(),
            state: (seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (task + 1)) | 1,
            documents: Rng(seed ^ (task << 32)),
        }
    }

    fn random(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.random() % n.max(1)
    }

    /// A new document with `_id` `id`.
    fn document(&mut self, id: i64) -> Document {
        // The generator's dates count seconds from 2024 by its number.
        let n = (id - self.base) as u64 % 10_000_000;
        let mut document = generate("orders", n, &mut self.documents);
        document.insert("_id", id);
        document
    }

    /// One write: an insert while there are few live documents, else 45%
    /// inserts, 35% updates, 8% replacements, 12% deletes.
    async fn step(&mut self, done: &Done) -> anyhow::Result<()> {
        let roll = if self.live.len() < MIN_LIVE {
            0
        } else {
            self.below(100)
        };
        if roll < 45 {
            let id = self.base + self.next;
            self.next += 1;
            let document = self.document(id);
            self.coll.insert_one(document).await?;
            self.live.push(id);
            done.inserts.fetch_add(1, Ordering::Relaxed);
        } else if roll < 80 {
            let at = self.below(self.live.len() as u64) as usize;
            let id = self.live[at];
            let status =
                ["pending", "paid", "shipped", "delivered", "cancelled"][self.below(5) as usize];
            let city = ["Lisbon", "Porto", "Madrid", "Lyon"][self.below(4) as usize];
            let result = self
                .coll
                .update_one(
                    doc! {"_id": id},
                    doc! {
                        "$set": {"status": status, "customer.address.city": city},
                        "$inc": {"version": 1_i64, "total": 1.5},
                    },
                )
                .await?;
            if result.modified_count != 1 {
                bail!("the update of {id} changed nothing");
            }
            done.updates.fetch_add(1, Ordering::Relaxed);
        } else if roll < 88 {
            let at = self.below(self.live.len() as u64) as usize;
            let id = self.live[at];
            let document = self.document(id);
            let result = self.coll.replace_one(doc! {"_id": id}, document).await?;
            if result.matched_count != 1 {
                bail!("the replacement of {id} matched nothing");
            }
            done.replaces.fetch_add(1, Ordering::Relaxed);
        } else {
            let at = self.below(self.live.len() as u64) as usize;
            let id = self.live.swap_remove(at);
            let result = self.coll.delete_one(doc! {"_id": id}).await?;
            if result.deleted_count != 1 {
                bail!("the delete of {id} deleted nothing");
            }
            done.deletes.fetch_add(1, Ordering::Relaxed);
        }
        done.total.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Runs `tasks` writers on `coll` until `until`, counting into `done`.
/// Each write is one oplog entry.
pub async fn run(
    coll: Collection<Document>,
    tasks: usize,
    seed: u64,
    until: Until,
    done: Arc<Done>,
) -> anyhow::Result<()> {
    let claimed = Arc::new(AtomicU64::new(0));
    let handles = (0..tasks.max(1) as u64).map(|task| {
        let (coll, done, claimed) = (coll.clone(), done.clone(), claimed.clone());
        tokio::spawn(async move {
            let mut writer = Writer::new(coll, task, seed);
            loop {
                let more = match until {
                    Until::Deadline(at) => Instant::now() < at,
                    Until::Writes(n) => claimed.fetch_add(1, Ordering::Relaxed) < n,
                };
                if !more {
                    return Ok::<_, anyhow::Error>(());
                }
                writer.step(&done).await?;
            }
        })
    });
    for result in try_join_all(handles)
        .await
        .context("a writer task panicked")?
    {
        result?;
    }
    Ok(())
}

/// Inserts `count` new documents into `coll` with `insert_many`, in
/// batches of 1000: a backlog written as fast as the server takes it.
pub async fn backlog(coll: &Collection<Document>, count: u64, seed: u64) -> anyhow::Result<()> {
    let mut writer = Writer::new(coll.clone(), 999, seed);
    let mut left = count;
    while left > 0 {
        let n = left.min(BACKLOG_BATCH as u64);
        let batch: Vec<Document> = (0..n)
            .map(|_| {
                let id = writer.base + writer.next;
                writer.next += 1;
                writer.document(id)
            })
            .collect();
        coll.insert_many(batch).await?;
        left -= n;
    }
    Ok(())
}
