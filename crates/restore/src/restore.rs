//! The orchestration: the reading thread's messages become collections,
//! insert batches, indexes, users and roles, and oplog writes, in the order
//! mongorestore does them (data, then indexes, then users and roles, then
//! the oplog).

use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::stream::{self, StreamExt, TryStreamExt};
use mongobak_archive::{ArchiveHeader, Namespace, NamespaceMeta};
use mongodb::bson::{doc, Document, RawDocumentBuf};
use mongodb::error::{ErrorKind, InsertManyError};
use mongodb::{Client, Collection};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

use crate::error::RestoreError;
use crate::filter::NsFilter;
use crate::input::{read_archive, Limits, Msg, ReaderStop};
use crate::metadata::{CollectionSpec, Shape};
use crate::oplog::{Applier, OplogReport};
use crate::timeseries::{classify, unpack, TimeseriesDoc};
use crate::{auth, NamespaceKind, NamespaceReport, Progress, RestoreOptions, RestoreReport};

const DUPLICATE_KEY: i32 = 11000;
const VALIDATION_FAILED: i32 = 121;

/// Restores a mongodump archive (plain or gzipped) into `target`; see the
/// crate docs. The archive is read on a blocking thread, hence the
/// `'static` reader (a file, a socket, a download body).
///
/// Returns what was restored; a damaged archive is
/// [`RestoreError::Read`], possibly after some namespaces were restored
/// (the archive is verified as it is read, as mongorestore does).
pub async fn restore_archive<R: Read + Send + 'static>(
    input: R,
    target: &Client,
    options: &RestoreOptions,
    progress: &Progress,
) -> Result<RestoreReport, RestoreError> {
    let parallelism = options.parallelism.max(1);
    let (tx, mut rx) = mpsc::channel(parallelism);
    let counter = Arc::new(AtomicU64::new(0));
    let limits = Limits {
        documents: options.batch_documents.max(1),
        bytes: options.batch_bytes.max(1),
    };
    let reader = {
        let counter = counter.clone();
        tokio::task::spawn_blocking(move || read_archive(input, counter, tx, limits))
    };
    let filter = NsFilter::new(&options.ns_include, &options.ns_exclude);
    let mut restore = Restore {
        client: target,
        options,
        progress,
        filter: &filter,
        counter,
        semaphore: Arc::new(Semaphore::new(parallelism)),
        tasks: JoinSet::new(),
        plans: HashMap::new(),
        report: RestoreReport::default(),
        users: Vec::new(),
        roles: Vec::new(),
        data_done: false,
        applier: None,
        oplog_position: 0,
    };
    let outcome = restore.run(&mut rx).await;
    // Stop the reader if the restore failed, then hear how it ended.
    drop(rx);
    restore.tasks.abort_all();
    let read = reader
        .await
        .map_err(|e| RestoreError::Reader(e.to_string()))?;
    match (outcome, read) {
        (_, Err(ReaderStop::Read(e))) => Err(e.into()),
        (_, Err(ReaderStop::Document(reason))) => Err(RestoreError::Reader(reason)),
        (Err(e), _) => Err(e),
        (Ok(()), Err(ReaderStop::Cancelled)) => Err(RestoreError::Reader(
            "the reader stopped before the end of the archive".into(),
        )),
        (Ok(()), Ok(())) => Ok(restore.finish()),
    }
}

/// Applies oplog entries (raw, in order) to `target`, as
/// [`restore_archive`] does with an archive's oplog: `applyOps` where the
/// server has it, translated writes otherwise. `options` gives the
/// namespace filters. Warnings about skipped entries are logged and come
/// back in the second member.
pub async fn replay_oplog(
    entries: impl IntoIterator<Item = Document>,
    target: &Client,
    options: &RestoreOptions,
) -> Result<(OplogReport, Vec<String>), RestoreError> {
    let filter = NsFilter::new(&options.ns_include, &options.ns_exclude);
    let mut applier = Applier::new(target, &filter);
    for (position, entry) in entries.into_iter().enumerate() {
        applier.apply(&entry, position as u64).await?;
    }
    applier.flush().await?;
    Ok((applier.report, applier.warnings))
}

/// What to do with a data namespace's documents.
enum Role {
    /// Read and dropped (filtered out, system collections).
    Skip,
    /// Inserted into `db.coll`.
    Data {
        spec: CollectionSpec,
        /// Where time series documents go, decided when it is created.
        buckets: Option<Buckets>,
    },
    /// Buffered and restored after the data.
    Users,
    Roles,
    /// Replayed or skipped.
    Oplog,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Buckets {
    /// The target has `system.buckets.X`: buckets go there as they are.
    IntoBuckets,
    /// Buckets are unpacked into measurements in `X`.
    Unpack,
}

struct Plan {
    db: String,
    coll: String,
    report: usize,
    role: Role,
}

struct BatchOutcome {
    report: usize,
    inserted: u64,
    duplicates: u64,
    invalid: u64,
}

struct Restore<'a> {
    client: &'a Client,
    options: &'a RestoreOptions,
    progress: &'a Progress,
    filter: &'a NsFilter,
    counter: Arc<AtomicU64>,
    semaphore: Arc<Semaphore>,
    tasks: JoinSet<Result<BatchOutcome, RestoreError>>,
    plans: HashMap<Namespace, Plan>,
    report: RestoreReport,
    users: Vec<RawDocumentBuf>,
    roles: Vec<RawDocumentBuf>,
    data_done: bool,
    applier: Option<Applier<'a>>,
    oplog_position: u64,
}

impl<'a> Restore<'a> {
    async fn run(&mut self, rx: &mut mpsc::Receiver<Msg>) -> Result<(), RestoreError> {
        let mut done = false;
        while let Some(msg) = rx.recv().await {
            self.progress
                .set_input_bytes(self.counter.load(Ordering::Relaxed));
            match msg {
                Msg::Prelude { header, namespaces } => self.plan(header, namespaces)?,
                Msg::Begin(namespace) => self.begin(&namespace).await?,
                Msg::Batch {
                    namespace,
                    documents,
                } => self.batch(&namespace, documents).await?,
                Msg::End(namespace) => tracing::debug!(%namespace, "namespace read to its end"),
                Msg::Done => done = true,
            }
            self.reap()?;
        }
        if done {
            self.finish_data().await?;
        }
        if let Some(applier) = self.applier.as_mut() {
            applier.flush().await?;
        }
        self.progress
            .set_input_bytes(self.counter.load(Ordering::Relaxed));
        Ok(())
    }

    fn finish(mut self) -> RestoreReport {
        if let Some(applier) = self.applier.take() {
            self.report.oplog = applier.report;
            self.report.warnings.extend(applier.warnings);
        }
        self.report
    }

    fn plan(
        &mut self,
        header: ArchiveHeader,
        namespaces: Vec<(NamespaceMeta, Namespace)>,
    ) -> Result<(), RestoreError> {
        self.report.source_server_version = header.server_version;
        let has_oplog = namespaces.iter().any(|(_, data)| data.is_oplog());
        if self.options.oplog_replay && !has_oplog {
            return Err(RestoreError::NoOplog);
        }
        self.report.oplog.present = has_oplog;
        for (meta, data) in namespaces {
            if data.is_oplog() {
                self.plans.insert(
                    data,
                    Plan {
                        db: String::new(),
                        coll: String::new(),
                        report: usize::MAX,
                        role: Role::Oplog,
                    },
                );
                continue;
            }
            let name = format!("{}.{}", meta.db, meta.collection);
            let mut entry = NamespaceReport {
                namespace: name.clone(),
                kind: NamespaceKind::Skipped,
                skipped: None,
                existed: false,
                documents: 0,
                inserted: 0,
                duplicates: 0,
                validation_failures: 0,
                indexes: 0,
            };
            let (role, skipped) = self.role_of(&meta, &name)?;
            entry.skipped = skipped;
            entry.kind = match &role {
                Role::Data { spec, .. } => match spec.shape {
                    Shape::Collection => NamespaceKind::Collection,
                    Shape::View => NamespaceKind::View,
                    Shape::Timeseries => NamespaceKind::Timeseries,
                },
                Role::Users | Role::Roles => NamespaceKind::Auth,
                Role::Skip | Role::Oplog => NamespaceKind::Skipped,
            };
            if let Some(reason) = &entry.skipped {
                tracing::info!(namespace = %name, reason, "namespace not restored");
            }
            self.report.namespaces.push(entry);
            self.plans.insert(
                data,
                Plan {
                    db: meta.db.clone(),
                    coll: meta.collection.clone(),
                    report: self.report.namespaces.len() - 1,
                    role,
                },
            );
        }
        Ok(())
    }

    fn role_of(
        &self,
        meta: &NamespaceMeta,
        name: &str,
    ) -> Result<(Role, Option<String>), RestoreError> {
        let skip = |reason: &str| Ok((Role::Skip, Some(reason.to_string())));
        if !self.filter.allows(name) {
            return skip("left out by the namespace filters");
        }
        if meta.db == "admin" {
            match meta.collection.as_str() {
                "system.users" | "system.roles" if !self.options.restore_users_and_roles => {
                    return skip(
                        "users and roles are not restored (restore_users_and_roles is off)",
                    )
                }
                "system.users" => return Ok((Role::Users, None)),
                "system.roles" => return Ok((Role::Roles, None)),
                "system.version" => {
                    return skip(
                        "the server keeps its own feature compatibility version and auth schema",
                    )
                }
                _ => {}
            }
        }
        if meta.db == "local" || meta.db == "config" {
            return skip("local and config are internal to the server");
        }
        if meta.collection.starts_with("system.") && meta.collection != "system.js" {
            return skip(
                "an internal system collection (views and time series come from their own namespaces)",
            );
        }
        let spec = CollectionSpec::parse(meta).map_err(|reason| RestoreError::Metadata {
            namespace: name.to_string(),
            reason,
        })?;
        Ok((
            Role::Data {
                spec,
                buckets: None,
            },
            None,
        ))
    }

    /// The first segment of a namespace: create what it needs.
    async fn begin(&mut self, namespace: &Namespace) -> Result<(), RestoreError> {
        let Some(plan) = self.plans.get(namespace) else {
            return Ok(());
        };
        match &plan.role {
            Role::Oplog => {
                if self.options.oplog_replay {
                    // Every other namespace reached EOF (the reader checks
                    // that): data, indexes, users and roles come first.
                    self.finish_data().await?;
                    self.applier = Some(Applier::new(self.client, self.filter));
                }
                Ok(())
            }
            Role::Data { spec, .. } => {
                let (db, coll, report) = (plan.db.clone(), plan.coll.clone(), plan.report);
                let spec = spec.clone();
                let (existed, buckets) = self.prepare(&db, &coll, &spec).await?;
                self.report.namespaces[report].existed = existed;
                if let Some(Plan {
                    role: Role::Data { buckets: b, .. },
                    ..
                }) = self.plans.get_mut(namespace)
                {
                    *b = buckets;
                }
                Ok(())
            }
            Role::Skip | Role::Users | Role::Roles => Ok(()),
        }
    }

    /// Drops (with `drop`) and creates a collection or view; returns whether
    /// it existed and kept, and where time series documents go.
    async fn prepare(
        &self,
        db: &str,
        coll: &str,
        spec: &CollectionSpec,
    ) -> Result<(bool, Option<Buckets>), RestoreError> {
        let name = format!("{db}.{coll}");
        let mut exists = self.exists(db, coll).await?;
        if exists && self.options.drop && !coll.starts_with("system.") {
            tracing::info!(namespace = %name, "dropping the existing collection");
            self.client
                .database(db)
                .collection::<Document>(coll)
                .drop()
                .await
                .map_err(|e| RestoreError::Drop {
                    namespace: name.clone(),
                    source: Box::new(e),
                })?;
            exists = false;
        }
        if exists {
            tracing::info!(namespace = %name, "restoring into the existing collection");
        } else {
            self.client
                .database(db)
                .run_command(spec.create_command(coll))
                .await
                .map_err(|e| RestoreError::Create {
                    namespace: name.clone(),
                    source: Box::new(e),
                })?;
        }
        let buckets = if spec.shape == Shape::Timeseries {
            if self.exists(db, &format!("system.buckets.{coll}")).await? {
                Some(Buckets::IntoBuckets)
            } else {
                Some(Buckets::Unpack)
            }
        } else {
            None
        };
        Ok((exists, buckets))
    }

    async fn exists(&self, db: &str, coll: &str) -> Result<bool, RestoreError> {
        let found: Vec<Document> = self
            .client
            .database(db)
            .run_cursor_command(
                doc! {"listCollections": 1, "filter": {"name": coll}, "nameOnly": true},
            )
            .await
            .map_err(|e| server_error(format!("listing the collections of {db}"), e))?
            .try_collect()
            .await
            .map_err(|e| server_error(format!("listing the collections of {db}"), e))?;
        Ok(!found.is_empty())
    }

    async fn batch(
        &mut self,
        namespace: &Namespace,
        documents: Vec<RawDocumentBuf>,
    ) -> Result<(), RestoreError> {
        let Some(plan) = self.plans.get(namespace) else {
            return Ok(());
        };
        let count = documents.len() as u64;
        if plan.report != usize::MAX {
            self.report.namespaces[plan.report].documents += count;
        }
        match &plan.role {
            Role::Skip => {
                self.progress.add_documents(count);
                Ok(())
            }
            Role::Users => {
                self.users.extend(documents);
                Ok(())
            }
            Role::Roles => {
                self.roles.extend(documents);
                Ok(())
            }
            Role::Oplog => self.oplog(documents).await,
            Role::Data { spec, buckets } => {
                let name = format!("{}.{}", plan.db, plan.coll);
                let target = (plan.db.clone(), plan.coll.clone());
                let report = plan.report;
                let capped = spec.capped();
                let bypass =
                    self.options.bypass_document_validation && spec.shape != Shape::Timeseries;
                // (database, collection, documents) to insert.
                let mut inserts: Vec<(String, String, Vec<RawDocumentBuf>)> = Vec::new();
                match (spec.shape, buckets) {
                    (Shape::View, _) => {
                        self.report
                            .warnings
                            .push(format!("{name}: documents of a view were ignored"));
                    }
                    (Shape::Timeseries, buckets) => {
                        let into_buckets = *buckets == Some(Buckets::IntoBuckets);
                        let time = spec.time_field();
                        let meta = spec.meta_field();
                        let mut measurements = Vec::with_capacity(documents.len());
                        let mut kept_buckets = Vec::new();
                        for document in documents {
                            match classify(&document) {
                                TimeseriesDoc::Measurement => measurements.push(document),
                                TimeseriesDoc::Bucket | TimeseriesDoc::CompressedBucket
                                    if into_buckets =>
                                {
                                    kept_buckets.push(document)
                                }
                                TimeseriesDoc::Bucket => measurements.extend(
                                    unpack(&document, time.as_deref(), meta.as_deref()).map_err(
                                        |reason| RestoreError::Metadata {
                                            namespace: name.clone(),
                                            reason: format!("a time series bucket: {reason}"),
                                        },
                                    )?,
                                ),
                                TimeseriesDoc::CompressedBucket => {
                                    return Err(RestoreError::CompressedBuckets { namespace: name })
                                }
                            }
                        }
                        if !kept_buckets.is_empty() {
                            let buckets = format!("system.buckets.{}", target.1);
                            inserts.push((target.0.clone(), buckets, kept_buckets));
                        }
                        if !measurements.is_empty() {
                            inserts.push((target.0, target.1, measurements));
                        }
                    }
                    (Shape::Collection, _) => inserts.push((target.0, target.1, documents)),
                }
                for (db, coll, documents) in inserts {
                    let insert = Insert {
                        collection: self.client.database(&db).collection(&coll),
                        namespace: name.clone(),
                        report,
                        // Capped collections keep insertion order.
                        ordered: capped,
                        bypass,
                        stop_on_error: self.options.stop_on_error,
                    };
                    if capped {
                        let outcome = insert.run(documents).await?;
                        self.record(outcome);
                    } else {
                        let permit = self
                            .semaphore
                            .clone()
                            .acquire_owned()
                            .await
                            .map_err(|e| RestoreError::Reader(e.to_string()))?;
                        self.tasks.spawn(async move {
                            let outcome = insert.run(documents).await;
                            drop(permit);
                            outcome
                        });
                    }
                }
                Ok(())
            }
        }
    }

    /// Collects finished insert batches.
    fn reap(&mut self) -> Result<(), RestoreError> {
        while let Some(joined) = self.tasks.try_join_next() {
            let outcome = joined.map_err(|e| RestoreError::Reader(e.to_string()))??;
            self.record(outcome);
        }
        Ok(())
    }

    fn record(&mut self, outcome: BatchOutcome) {
        let entry = &mut self.report.namespaces[outcome.report];
        entry.inserted += outcome.inserted;
        entry.duplicates += outcome.duplicates;
        entry.validation_failures += outcome.invalid;
        self.progress
            .add_documents(outcome.inserted + outcome.duplicates + outcome.invalid);
    }

    /// After the last data namespace: waits for the inserts, builds the
    /// indexes, restores users and roles. Runs once.
    async fn finish_data(&mut self) -> Result<(), RestoreError> {
        if self.data_done {
            return Ok(());
        }
        self.data_done = true;
        while let Some(joined) = self.tasks.join_next().await {
            let outcome = joined.map_err(|e| RestoreError::Reader(e.to_string()))??;
            self.record(outcome);
        }
        if self.options.restore_indexes {
            self.build_indexes().await?;
        }
        let users = std::mem::take(&mut self.users);
        let roles = std::mem::take(&mut self.roles);
        let (users, roles) = auth::restore(
            self.client,
            &users,
            &roles,
            self.options.drop,
            &mut self.report.warnings,
        )
        .await?;
        self.report.users = users;
        self.report.roles = roles;
        Ok(())
    }

    async fn build_indexes(&mut self) -> Result<(), RestoreError> {
        let mut jobs = Vec::new();
        for plan in self.plans.values() {
            let Role::Data { spec, .. } = &plan.role else {
                continue;
            };
            if spec.shape == Shape::View || self.report.namespaces[plan.report].skipped.is_some() {
                continue;
            }
            let specs = spec.secondary_indexes();
            if !specs.is_empty() {
                jobs.push((plan.db.clone(), plan.coll.clone(), plan.report, specs));
            }
        }
        let client = self.client;
        let built: Vec<(usize, u64)> = stream::iter(jobs)
            .map(|(db, coll, report, specs)| async move {
                let names = specs
                    .iter()
                    .map(|s| s.get_str("name").unwrap_or("?").to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                let count = specs.len() as u64;
                tracing::info!(namespace = %format!("{db}.{coll}"), indexes = %names, "building indexes");
                client
                    .database(&db)
                    .run_command(doc! {"createIndexes": &coll, "indexes": specs})
                    .await
                    .map_err(|e| RestoreError::Index {
                        namespace: format!("{db}.{coll}"),
                        indexes: names,
                        source: Box::new(e),
                    })?;
                Ok::<_, RestoreError>((report, count))
            })
            .buffer_unordered(self.options.parallelism.max(1))
            .try_collect()
            .await?;
        for (report, count) in built {
            self.report.namespaces[report].indexes += count;
        }
        Ok(())
    }

    async fn oplog(&mut self, entries: Vec<RawDocumentBuf>) -> Result<(), RestoreError> {
        self.progress.add_oplog_entries(entries.len() as u64);
        let Some(applier) = self.applier.as_mut() else {
            self.report.oplog.entries += entries.len() as u64;
            self.report.oplog.skipped += entries.len() as u64;
            return Ok(());
        };
        for raw in entries {
            let position = self.oplog_position;
            self.oplog_position += 1;
            let entry = raw.to_document().map_err(|e| RestoreError::Oplog {
                position: format!("#{position}"),
                op: "?".into(),
                namespace: "?".into(),
                reason: format!("the entry is not valid BSON: {e}"),
            })?;
            applier.apply(&entry, position).await?;
        }
        Ok(())
    }
}

fn server_error(action: String, e: mongodb::error::Error) -> RestoreError {
    RestoreError::Server {
        action,
        source: Box::new(e),
    }
}

/// One insert batch.
struct Insert {
    collection: Collection<RawDocumentBuf>,
    namespace: String,
    report: usize,
    ordered: bool,
    bypass: bool,
    stop_on_error: bool,
}

impl Insert {
    async fn run(self, documents: Vec<RawDocumentBuf>) -> Result<BatchOutcome, RestoreError> {
        let mut outcome = BatchOutcome {
            report: self.report,
            inserted: 0,
            duplicates: 0,
            invalid: 0,
        };
        let mut start = 0;
        while start < documents.len() {
            let rest = &documents[start..];
            let mut action = self.collection.insert_many(rest).ordered(self.ordered);
            if self.bypass {
                action = action.bypass_document_validation(true);
            }
            let error = match action.await {
                Ok(_) => {
                    outcome.inserted += rest.len() as u64;
                    break;
                }
                Err(e) => e,
            };
            let ErrorKind::InsertMany(InsertManyError {
                write_errors: Some(errors),
                write_concern_error: None,
                ..
            }) = &*error.kind
            else {
                return Err(self.failed(error));
            };
            let ignorable = !self.stop_on_error
                && errors
                    .iter()
                    .all(|w| w.code == DUPLICATE_KEY || w.code == VALIDATION_FAILED);
            if !ignorable {
                return Err(self.failed(error));
            }
            let duplicates = errors.iter().filter(|w| w.code == DUPLICATE_KEY).count() as u64;
            let invalid = errors.len() as u64 - duplicates;
            outcome.duplicates += duplicates;
            outcome.invalid += invalid;
            if self.ordered {
                // An ordered insert stops at its first error: go on after it.
                let failed_at = errors.iter().map(|w| w.index).min().unwrap_or(0);
                outcome.inserted += failed_at as u64;
                start += failed_at + 1;
            } else {
                outcome.inserted += rest.len() as u64 - errors.len() as u64;
                break;
            }
        }
        if outcome.duplicates + outcome.invalid > 0 {
            tracing::info!(
                namespace = %self.namespace,
                duplicates = outcome.duplicates,
                invalid = outcome.invalid,
                "continuing through insert errors"
            );
        }
        Ok(outcome)
    }

    fn failed(&self, error: mongodb::error::Error) -> RestoreError {
        RestoreError::Insert {
            namespace: self.namespace.clone(),
            source: Box::new(error),
        }
    }
}
