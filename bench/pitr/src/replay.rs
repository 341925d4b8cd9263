//! Replay: the oplog applier of a restore to a time
//! (`mongobak_restore::point_in_time::CollectionAtTime::replay`) against
//! the same changes sent as a plain ordered bulk write, both into a fresh
//! collection of the same server.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use bench_support::process::{clock_ticks_per_sec, machine_cpu, process_cpu};
use futures::TryStreamExt;
use mongobak_restore::point_in_time::CollectionAtTime;
use mongodb::bson::{doc, Bson, Document, RawDocumentBuf};
use mongodb::options::{
    DeleteOneModel, InsertOneModel, ReplaceOneModel, UpdateModifications, UpdateOneModel,
    WriteModel,
};
use mongodb::{Client, Namespace};

use crate::writer::{self, Done, Until};

/// Database of the changes and of the collections they are applied to.
pub const DB: &str = "benchreplay";
/// The collection the changes were made to.
const SOURCE: &str = "source";
/// The fresh collection each run applies them to.
const TARGET: &str = "target";
/// Write models per bulk write of the baseline.
const BASELINE_BATCH: usize = 1000;

/// The changes to replay: real oplog entries of the source.
pub struct Changes {
    /// The entries, in oplog order.
    pub entries: Vec<RawDocumentBuf>,
    /// The mix the writer made.
    pub mix: String,
    /// Seconds the writer took.
    pub seconds: f64,
    /// The source collection's state after them: documents and a hash.
    expected: (u64, u64),
}

/// Makes `count` changes to `benchreplay.source` with the writer (`tasks`
/// at once) and reads them back from the oplog.
pub async fn generate(client: &Client, count: u64, tasks: usize) -> anyhow::Result<Changes> {
    let db = client.database(DB);
    let _ = db.run_command(doc! {"drop": SOURCE}).await;
    let done = Arc::new(Done::default());
    let start = Instant::now();
    writer::run(
        db.collection::<Document>(SOURCE),
        tasks,
        2,
        Until::Writes(count),
        done.clone(),
    )
    .await?;
    let seconds = start.elapsed().as_secs_f64();
    let entries: Vec<RawDocumentBuf> = client
        .database("local")
        .collection::<RawDocumentBuf>("oplog.rs")
        .find(doc! {"ns": format!("{DB}.{SOURCE}"), "op": {"$in": ["i", "u", "d"]}})
        .sort(doc! {"$natural": 1})
        .await?
        .try_collect()
        .await?;
    if entries.len() as u64 != count {
        bail!(
            "the oplog holds {} entries of {DB}.{SOURCE}, the writer made {count} changes",
            entries.len()
        );
    }
    let expected = state(client, SOURCE).await?;
    Ok(Changes {
        entries,
        mix: done.mix(),
        seconds,
        expected,
    })
}

/// A collection's documents, by `_id`: how many, and a hash of their
/// bytes.
async fn state(client: &Client, coll: &str) -> anyhow::Result<(u64, u64)> {
    let mut cursor = client
        .database(DB)
        .collection::<RawDocumentBuf>(coll)
        .find(doc! {})
        .sort(doc! {"_id": 1})
        .await?;
    let mut hasher = DefaultHasher::new();
    let mut count = 0;
    while let Some(document) = cursor.try_next().await? {
        document.as_bytes().hash(&mut hasher);
        count += 1;
    }
    Ok((count, hasher.finish()))
}

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `CollectionAtTime::replay` of every entry.
    Replay,
    /// The ordered bulk write.
    Baseline,
}

impl Kind {
    /// Its name in the report.
    pub fn name(self, retry_writes: bool) -> String {
        let rw = if retry_writes {
            "retryWrites=true"
        } else {
            "retryWrites=false"
        };
        match self {
            Kind::Replay => format!("replay ({rw})"),
            Kind::Baseline => format!("bulk write ({rw})"),
        }
    }
}

/// One measured run.
#[derive(Debug, Clone)]
pub struct Run {
    /// Round, from 1.
    pub round: usize,
    /// What ran.
    pub kind: Kind,
    /// With retryable writes.
    pub retry_writes: bool,
    /// Wall seconds.
    pub seconds: f64,
    /// CPU seconds of this process, of the server, of everything else.
    pub client_cpu: f64,
    /// CPU seconds of the server.
    pub server_cpu: f64,
    /// CPU seconds of the rest of the machine.
    pub other_cpu: f64,
    /// Entries applied.
    pub entries: u64,
}

impl Run {
    /// Entries per second.
    pub fn rate(&self) -> f64 {
        self.entries as f64 / self.seconds
    }
}

/// The changes as the baseline's write models: inserts as they are,
/// updates as `$set` of the updated fields and `$unset` of the removed
/// ones, replacements and deletes by `_id`. Made before the clock starts.
pub fn models(changes: &Changes) -> anyhow::Result<Vec<WriteModel>> {
    let namespace = Namespace::new(DB, TARGET);
    changes
        .entries
        .iter()
        .map(|raw| {
            let entry: Document = raw.to_document()?;
            let o = entry.get_document("o")?.clone();
            Ok(match entry.get_str("op")? {
                "i" => InsertOneModel::builder()
                    .namespace(namespace.clone())
                    .document(o)
                    .build()
                    .into(),
                "d" => DeleteOneModel::builder()
                    .namespace(namespace.clone())
                    .filter(doc! {"_id": o.get("_id").context("a delete without _id")?.clone()})
                    .build()
                    .into(),
                "u" => {
                    let id = entry
                        .get_document("o2")?
                        .get("_id")
                        .context("an update without o2._id")?
                        .clone();
                    match o.get_document("diff") {
                        Ok(diff) if o.contains_key("$v") => {
                            let truncated = diff.get_array("truncatedArrays").map_or(0, Vec::len);
                            if truncated > 0 {
                                bail!("the writer makes no array truncations");
                            }
                            let mut update = Document::new();
                            let set = diff.get_document("updatedFields")?;
                            if !set.is_empty() {
                                update.insert("$set", set.clone());
                            }
                            let removed = diff.get_array("removedFields")?;
                            if !removed.is_empty() {
                                let unset: Document = removed
                                    .iter()
                                    .filter_map(Bson::as_str)
                                    .map(|f| (f.to_string(), Bson::String(String::new())))
                                    .collect();
                                update.insert("$unset", unset);
                            }
                            UpdateOneModel::builder()
                                .namespace(namespace.clone())
                                .filter(doc! {"_id": id})
                                .update(UpdateModifications::Document(update))
                                .build()
                                .into()
                        }
                        _ => ReplaceOneModel::builder()
                            .namespace(namespace.clone())
                            .filter(doc! {"_id": id})
                            .replacement(o)
                            .build()
                            .into(),
                    }
                }
                op => bail!("unexpected op {op:?}"),
            })
        })
        .collect()
}

/// A client of `uri` with or without retryable writes, answering a ping.
async fn connect(uri: &str, retry_writes: bool) -> anyhow::Result<Client> {
    let separator = if uri.contains('?') { '&' } else { '?' };
    let client =
        Client::with_uri_str(format!("{uri}{separator}retryWrites={retry_writes}")).await?;
    client
        .database("admin")
        .run_command(doc! {"ping": 1})
        .await?;
    Ok(client)
}

/// Drops and creates the target collection.
async fn fresh_target(client: &Client) -> anyhow::Result<()> {
    let db = client.database(DB);
    let _ = db.run_command(doc! {"drop": TARGET}).await;
    db.run_command(doc! {"create": TARGET}).await?;
    Ok(())
}

/// Applies the changes to a fresh target collection with `kind`, timed,
/// and checks the result is the source's state.
pub async fn run(
    uri: &str,
    kind: Kind,
    retry_writes: bool,
    round: usize,
    changes: &Changes,
    models: &[WriteModel],
    server_pid: u32,
) -> anyhow::Result<Run> {
    let ticks = clock_ticks_per_sec();
    let client = connect(uri, retry_writes).await?;
    fresh_target(&client).await?;
    // The baseline's batches, copied before the clock starts.
    let mut batches: Vec<Vec<WriteModel>> = match kind {
        Kind::Baseline => models.chunks(BASELINE_BATCH).map(<[_]>::to_vec).collect(),
        Kind::Replay => Vec::new(),
    };
    let before = (
        own_cpu(),
        process_cpu(server_pid, ticks).unwrap_or(0.0),
        machine_cpu(ticks).unwrap_or(0.0),
    );
    let start = Instant::now();
    match kind {
        Kind::Replay => {
            let mut collection = CollectionAtTime::new(&client, DB, SOURCE, TARGET);
            for entry in &changes.entries {
                if !collection.replay(entry).await? {
                    bail!("an entry of {DB}.{SOURCE} was not replayed");
                }
            }
            // Sends the last batch.
            if !collection.exists().await? {
                bail!("the replayed collection does not exist");
            }
        }
        Kind::Baseline => {
            for batch in batches.drain(..) {
                client.bulk_write(batch).ordered(true).await?;
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let client_cpu = own_cpu() - before.0;
    let server_cpu = process_cpu(server_pid, ticks).unwrap_or(0.0) - before.1;
    let machine = machine_cpu(ticks).unwrap_or(0.0) - before.2;
    let got = state(&client, TARGET).await?;
    if got != changes.expected {
        bail!(
            "{}: the target holds {} documents (hash {:x}), the source {} (hash {:x})",
            kind.name(retry_writes),
            got.0,
            got.1,
            changes.expected.0,
            changes.expected.1
        );
    }
    Ok(Run {
        round,
        kind,
        retry_writes,
        seconds,
        client_cpu,
        server_cpu,
        other_cpu: (machine - client_cpu - server_cpu).max(0.0),
        entries: changes.entries.len() as u64,
    })
}

/// User plus system CPU seconds of this process, all threads.
fn own_cpu() -> f64 {
    // SAFETY: an all-zero rusage is valid; getrusage fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}
