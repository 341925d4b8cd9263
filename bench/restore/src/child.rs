//! The child side: one operation per process, timed by the child itself,
//! reported as one JSON line on stdout.
//!
//! * **restore**: `mongobak_restore::restore_archive` of the archive file
//!   with `RestoreOptions` as `mongobak restore` builds them by default,
//!   on a default multi-threaded tokio runtime driven by `block_on`, as the
//!   CLI runs it. Timed from opening the file to the returned report.
//! * **baseline**: the same documents, read from the same archive into
//!   memory **before** the clock starts and cut into the batches the
//!   restore's reader cuts (per namespace, at most `batch_documents`
//!   documents and `batch_bytes` bytes), then `insert_many` (unordered,
//!   raw BSON) with `parallelism` batches in flight, in archive order, and
//!   the same `createIndexes` commands afterwards, `parallelism` at once.
//! * **baseline streamed**: the same inserts, the batches read while they
//!   are inserted, by a blocking thread, through a channel of
//!   `parallelism` batches, as the restore reads them: the baseline plus
//!   the restore's reading work, without its orchestration.
//! * **read**: the restore's reading side alone (gzip detection, gunzip,
//!   `ArchiveReader` with its CRCs, `RawDocumentBuf::from_bytes`, the same
//!   batching), on one thread, without a server: what the restore does
//!   that the baseline does not.
//!
//! Both server-facing children connect and `ping` before the clock
//! starts, so neither counts the first connection.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{bail, Context};
use futures::stream::{self, StreamExt, TryStreamExt};
use mongobak_archive::{gunzip, ArchiveReader, Event, Namespace};
use mongobak_restore::{restore_archive, Progress, RestoreOptions};
use mongodb::bson::{doc, Bson, Document, RawDocumentBuf};
use mongodb::Client;
use serde::{Deserialize, Serialize};

use crate::Op;
use bench_support::process::{machine_cpu, process_cpu};

/// What a child reports.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ChildReport {
    /// BSON bytes of the documents (restore: 0, the parent knows them from
    /// the archive's record).
    pub bytes: u64,
    /// Documents inserted (read: read).
    pub documents: u64,
    /// Documents refused as duplicate keys (restore only; must be 0).
    pub duplicates: u64,
    /// Secondary indexes built.
    pub indexes: u64,
    /// Wall time of the operation.
    pub seconds: f64,
    /// Up to the last insert (restore: the first index build's log event).
    pub data_seconds: Option<f64>,
    /// The index builds.
    pub index_seconds: Option<f64>,
    /// CPU used during the timed part (a baseline's loading of the
    /// documents before the clock starts is left out).
    pub cpu: Option<CpuUse>,
    /// Peak resident set of the child, from `VmHWM`, in kB.
    pub vm_hwm_kb: u64,
}

/// CPU seconds used over the timed part of an operation.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct CpuUse {
    /// This process, all its threads (`getrusage(RUSAGE_SELF)`).
    pub own: f64,
    /// The server (`/proc/PID/stat`).
    pub server: Option<f64>,
    /// The whole machine's busy time (`/proc/stat`).
    pub machine: Option<f64>,
}

/// Reads the CPU time of this process, the server and the machine, so
/// the columns cover exactly what the clock covers.
pub struct Meter {
    server_pid: Option<u32>,
    ticks_per_sec: f64,
}

impl Meter {
    pub fn new(server_pid: Option<u32>) -> Meter {
        Meter {
            server_pid,
            // SAFETY: sysconf has no preconditions.
            ticks_per_sec: unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64,
        }
    }

    fn sample(&self) -> CpuUse {
        // SAFETY: an all-zero rusage is valid; getrusage fills it.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: RUSAGE_SELF with a valid pointer.
        unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
        let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        CpuUse {
            own: seconds(usage.ru_utime) + seconds(usage.ru_stime),
            server: self
                .server_pid
                .and_then(|pid| process_cpu(pid, self.ticks_per_sec)),
            machine: machine_cpu(self.ticks_per_sec),
        }
    }

    /// The CPU used since `before` (a [`Meter::sample`]).
    fn since(&self, before: CpuUse) -> CpuUse {
        let after = self.sample();
        let diff = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| b - a);
        CpuUse {
            own: after.own - before.own,
            server: diff(before.server, after.server),
            machine: diff(before.machine, after.machine),
        }
    }
}

/// Records when the restore's info events happen (the first "building
/// indexes" ends its data phase).
#[derive(Clone, Default)]
struct EventClock(Arc<Mutex<Vec<(Instant, String)>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for EventClock {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        if let Ok(mut events) = self.0.lock() {
            events.push((Instant::now(), message.0));
        }
    }
}

impl EventClock {
    /// When the first event named `name` happened.
    fn first(&self, name: &str) -> Option<Instant> {
        let events = self.0.lock().ok()?;
        events.iter().find(|(_, m)| m == name).map(|(at, _)| *at)
    }
}

/// Runs `op` and prints its report.
pub fn main(
    op: Op,
    uri: Option<&str>,
    server_pid: Option<u32>,
    archive: &Path,
    gb: f64,
    options: &RestoreOptions,
) -> anyhow::Result<()> {
    let clock = EventClock::default();
    {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        use tracing_subscriber::Layer;
        let log_filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| "warn,mongobak_restore=info".into());
        let clock_filter = tracing_subscriber::filter::Targets::new()
            .with_target("mongobak_restore", tracing::Level::INFO);
        tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(false)
                    .with_filter(log_filter),
            )
            .with(clock.clone().with_filter(clock_filter))
            .init();
    }
    let uri = || uri.context("--uri is required");
    let meter = Meter::new(server_pid);
    let mut report = match op {
        Op::WriteArchive => crate::data::write_archive(archive, gb)?,
        Op::Read => read(archive, options, &meter)?,
        Op::Restore | Op::Baseline | Op::BaselineStreamed => {
            // The kind of runtime `mongobak restore` runs on, driven the
            // same way (`block_on` on the main thread).
            let runtime = tokio::runtime::Runtime::new()?;
            let report = if op == Op::Restore {
                runtime.block_on(restore(uri()?, archive, options, &clock, &meter))?
            } else {
                runtime.block_on(baseline(
                    uri()?,
                    archive,
                    options,
                    op == Op::BaselineStreamed,
                    &meter,
                ))?
            };
            drop(runtime);
            report
        }
    };
    report.vm_hwm_kb = vm_hwm_kb().context("cannot read VmHWM from /proc/self/status")?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// Peak resident set size of this process since exec, in kB.
fn vm_hwm_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A client as `mongobak restore` makes one, with its connection open.
async fn connect(uri: &str) -> anyhow::Result<Client> {
    let client = Client::with_uri_str(uri)
        .await
        .context("the URI is not a valid MongoDB connection string")?;
    client
        .database("admin")
        .run_command(doc! {"ping": 1})
        .await
        .context("cannot reach the server")?;
    Ok(client)
}

/// One `restore_archive` of the file.
async fn restore(
    uri: &str,
    archive: &Path,
    options: &RestoreOptions,
    clock: &EventClock,
    meter: &Meter,
) -> anyhow::Result<ChildReport> {
    let client = connect(uri).await?;
    let progress = Progress::default();
    let cpu = meter.sample();
    let started = Instant::now();
    let input =
        File::open(archive).with_context(|| format!("cannot open {}", archive.display()))?;
    let report = restore_archive(input, &client, options, &progress).await?;
    let finished = Instant::now();
    let cpu = meter.since(cpu);
    let indexing = clock.first("building indexes").unwrap_or(finished);
    let secs = |a: Instant, b: Instant| b.saturating_duration_since(a).as_secs_f64();
    for warning in &report.warnings {
        eprintln!("restore warning: {warning}");
    }
    Ok(ChildReport {
        bytes: 0,
        documents: report.inserted(),
        duplicates: report.duplicates(),
        indexes: report.namespaces.iter().map(|n| n.indexes).sum(),
        seconds: secs(started, finished),
        data_seconds: Some(secs(started, indexing)),
        index_seconds: Some(secs(indexing, finished)),
        cpu: Some(cpu),
        vm_hwm_kb: 0,
    })
}

/// One insert batch of a namespace.
struct Batch {
    namespace: Namespace,
    documents: Vec<RawDocumentBuf>,
    bytes: u64,
}

/// The archive as the restore's reader hands it over: the prelude's
/// secondary index specifications per namespace, and the batches.
struct Plan {
    indexes: Vec<(Namespace, Vec<Document>)>,
    batches: u64,
    documents: u64,
    bytes: u64,
}

/// Reads `archive` the way the restore's reader does
/// (crates/restore/src/input.rs): a 256 KiB buffer, gzip detected by its
/// magic, `ArchiveReader`, each document made a `RawDocumentBuf`, batches
/// cut per namespace at `batch_documents` documents or `batch_bytes`
/// bytes, each handed to `sink`.
fn read_archive(
    archive: &Path,
    options: &RestoreOptions,
    mut sink: impl FnMut(Batch) -> anyhow::Result<()>,
) -> anyhow::Result<Plan> {
    let file = File::open(archive).with_context(|| format!("cannot open {}", archive.display()))?;
    let mut buffered = BufReader::with_capacity(256 * 1024, file);
    let gzipped = buffered.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    let source: Box<dyn Read> = if gzipped {
        Box::new(gunzip(buffered))
    } else {
        Box::new(buffered)
    };
    let mut reader = ArchiveReader::new(source)?;
    let mut indexes = Vec::new();
    for (meta, data) in reader.prelude().iter().zip(reader.data_namespaces()) {
        if !data.is_oplog() {
            indexes.push((data.clone(), secondary_indexes(&meta.metadata_json)?));
        }
    }
    let limits = (
        options.batch_documents.max(1),
        options.batch_bytes.max(1) as u64,
    );
    let mut plan = Plan {
        indexes,
        batches: 0,
        documents: 0,
        bytes: 0,
    };
    let mut pending: HashMap<Namespace, Batch> = HashMap::new();
    let mut current: Option<Namespace> = None;
    let mut flush = |batch: Batch, plan: &mut Plan| {
        if batch.documents.is_empty() {
            return Ok(());
        }
        plan.batches += 1;
        plan.documents += batch.documents.len() as u64;
        plan.bytes += batch.bytes;
        sink(batch)
    };
    let empty = |namespace: &Namespace| Batch {
        namespace: namespace.clone(),
        documents: Vec::new(),
        bytes: 0,
    };
    while let Some(event) = reader.next_event()? {
        match event {
            Event::SegmentStart { namespace } => {
                pending
                    .entry(namespace.clone())
                    .or_insert_with(|| empty(&namespace));
                current = Some(namespace);
            }
            Event::Document(bytes) => {
                let Some(namespace) = &current else {
                    bail!("a document outside a segment");
                };
                let size = bytes.len() as u64;
                let document = RawDocumentBuf::from_bytes(bytes)?;
                let batch = pending
                    .get_mut(namespace)
                    .context("opened by its segment")?;
                if !batch.documents.is_empty()
                    && (batch.documents.len() >= limits.0 || batch.bytes + size > limits.1)
                {
                    let full = std::mem::replace(batch, empty(namespace));
                    flush(full, &mut plan)?;
                }
                batch.documents.push(document);
                batch.bytes += size;
            }
            Event::NamespaceEnd { namespace, .. } => {
                if let Some(batch) = pending.remove(&namespace) {
                    flush(batch, &mut plan)?;
                }
                current = None;
            }
        }
    }
    Ok(plan)
}

/// The secondary index specifications of a namespace's metadata, as the
/// restore sends them (crates/restore/src/metadata.rs): every index but
/// `_id_`, without `v`, `ns` and `entryFormat`.
fn secondary_indexes(metadata_json: &str) -> anyhow::Result<Vec<Document>> {
    if metadata_json.is_empty() {
        return Ok(Vec::new());
    }
    let metadata: serde_json::Value = serde_json::from_str(metadata_json)?;
    let Some(list) = metadata.get("indexes").and_then(|l| l.as_array()) else {
        return Ok(Vec::new());
    };
    let mut specs = Vec::new();
    for item in list {
        let Bson::Document(spec) = Bson::try_from(item.clone())? else {
            bail!("an index specification is not a document: {item}");
        };
        if spec.get_str("name") == Ok("_id_") {
            continue;
        }
        specs.push(
            spec.into_iter()
                .filter(|(k, _)| !matches!(k.as_str(), "v" | "ns" | "entryFormat"))
                .collect(),
        );
    }
    Ok(specs)
}

/// The restore's reading side alone.
fn read(archive: &Path, options: &RestoreOptions, meter: &Meter) -> anyhow::Result<ChildReport> {
    let cpu = meter.sample();
    let started = Instant::now();
    let plan = read_archive(archive, options, |_| Ok(()))?;
    Ok(ChildReport {
        bytes: plan.bytes,
        documents: plan.documents,
        seconds: started.elapsed().as_secs_f64(),
        cpu: Some(meter.since(cpu)),
        ..ChildReport::default()
    })
}

/// The plain batched insert of the same documents, then the same indexes.
/// `streamed`: the batches come from a reading thread through a channel of
/// `parallelism` batches, as in the restore, instead of from memory.
async fn baseline(
    uri: &str,
    archive: &Path,
    options: &RestoreOptions,
    streamed: bool,
    meter: &Meter,
) -> anyhow::Result<ChildReport> {
    let parallelism = options.parallelism.max(1);
    let preloaded = if streamed {
        None
    } else {
        let mut batches = Vec::new();
        let plan = read_archive(archive, options, |batch| {
            batches.push(batch);
            Ok(())
        })?;
        eprintln!(
            "baseline: {} documents in {} batches in memory",
            plan.documents, plan.batches
        );
        Some((batches, plan))
    };
    let client = connect(uri).await?;

    let cpu = meter.sample();
    let started = Instant::now();
    let (bytes, documents, plan) = match preloaded {
        Some((batches, plan)) => {
            let (bytes, documents) =
                insert_batches(&client, stream::iter(batches), parallelism).await?;
            (bytes, documents, plan)
        }
        None => {
            let (tx, rx) = tokio::sync::mpsc::channel(parallelism);
            let reader = {
                let (archive, options) = (archive.to_path_buf(), options.clone());
                tokio::task::spawn_blocking(move || {
                    read_archive(&archive, &options, |batch| {
                        tx.blocking_send(batch)
                            .map_err(|_| anyhow::anyhow!("the inserts stopped"))
                    })
                })
            };
            let batches = stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|batch| (batch, rx))
            });
            // When the inserts fail, the reader stops at its next send.
            let inserted = insert_batches(&client, batches, parallelism).await;
            let read = reader.await?;
            let (bytes, documents) = inserted?;
            (bytes, documents, read?)
        }
    };
    let indexing = Instant::now();
    let client = &client;
    let built: Vec<u64> = stream::iter(plan.indexes.into_iter().filter(|(_, s)| !s.is_empty()))
        .map(|(namespace, specs)| async move {
            let count = specs.len() as u64;
            client
                .database(&namespace.db)
                .run_command(doc! {"createIndexes": &namespace.collection, "indexes": specs})
                .await
                .with_context(|| format!("building the indexes of {namespace}"))?;
            Ok::<_, anyhow::Error>(count)
        })
        .buffer_unordered(parallelism)
        .try_collect()
        .await?;
    let finished = Instant::now();
    let cpu = meter.since(cpu);
    Ok(ChildReport {
        bytes,
        documents,
        duplicates: 0,
        indexes: built.iter().sum(),
        seconds: finished.duration_since(started).as_secs_f64(),
        data_seconds: Some(indexing.duration_since(started).as_secs_f64()),
        index_seconds: Some(finished.duration_since(indexing).as_secs_f64()),
        cpu: Some(cpu),
        vm_hwm_kb: 0,
    })
}

/// Inserts every batch, one spawned task per batch (as the restore spawns
/// its inserts), at most `parallelism` at once, in order of arrival:
/// `(bytes, documents)`.
async fn insert_batches(
    client: &Client,
    batches: impl futures::Stream<Item = Batch>,
    parallelism: usize,
) -> anyhow::Result<(u64, u64)> {
    batches
        .map(|batch| {
            let collection = client
                .database(&batch.namespace.db)
                .collection::<RawDocumentBuf>(&batch.namespace.collection);
            tokio::spawn(async move {
                collection
                    .insert_many(&batch.documents)
                    .ordered(false)
                    .await
                    .with_context(|| format!("inserting into {}", batch.namespace))?;
                Ok::<_, anyhow::Error>((batch.bytes, batch.documents.len() as u64))
            })
        })
        .buffer_unordered(parallelism)
        .map(|joined| joined?)
        .try_fold((0u64, 0u64), |(b, d), (nb, nd)| async move {
            Ok((b + nb, d + nd))
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secondary_indexes_drop_id_and_server_fields() {
        let json = r#"{"indexes":[{"v":{"$numberInt":"2"},"key":{"_id":{"$numberInt":"1"}},"name":"_id_"},{"v":{"$numberInt":"2"},"key":{"ts":{"$numberInt":"1"}},"name":"ts_1","unique":true}],"collectionName":"c","type":"collection"}"#;
        let specs = secondary_indexes(json).unwrap();
        assert_eq!(
            specs,
            vec![doc! {"key": {"ts": 1}, "name": "ts_1", "unique": true}]
        );
    }
}
