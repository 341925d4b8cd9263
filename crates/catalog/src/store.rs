//! The metadata store: SQLite or PostgreSQL through sqlx, migrations
//! embedded in the binary (one set per engine).
//!
//! One [`Catalog`] is shared by the API handlers, the workers and the
//! command line; it is cheap to clone (a connection pool). A SQLite file and
//! its folder are created on first use; migrations run at open on either
//! engine, so a fresh data dir or an empty PostgreSQL database needs no
//! set-up.
//!
//! Queries go through sqlx's `Any` driver and are written once, in the SQL
//! both engines speak (`$n` parameters, `ON CONFLICT`, `RETURNING`); the few
//! places where they differ ask [`Engine`]: how a write transaction takes
//! its lock, and `FOR UPDATE SKIP LOCKED` when claiming queued work. Flags
//! are stored as integers, since the `Any` driver does not turn SQLite's
//! integers into booleans.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};

use crate::instance::{decode_instance, Instance, SELECT_INSTANCE};
use crate::wake::Wakeups;

/// Failures of the metadata store.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The metadata URL is not one this build can open.
    #[error("unsupported metadata URL `{url}`: expected sqlite://PATH or postgres://...")]
    UnsupportedUrl {
        /// The URL as given.
        url: String,
    },
    /// Creating the folder of the database file failed.
    #[error("cannot create the metadata folder {path}: {source}")]
    CreateDir {
        /// The folder.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// An instance with this ID is already registered.
    #[error("an instance with ID {id} is already registered")]
    InstanceExists {
        /// The ID.
        id: String,
    },
    /// A backup of the instance is already queued or running.
    #[error("a backup of instance {instance_id} is already queued or running")]
    BackupInProgress {
        /// The instance.
        instance_id: String,
    },
    /// A stored row does not decode (written by a newer version?).
    #[error("the metadata row of {what} is unreadable: {detail}")]
    Corrupt {
        /// What the row describes.
        what: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The database answered with an error.
    #[error("metadata database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed.
    #[error("metadata migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// The database engine behind a [`Catalog`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// One file, one node (`sqlite://PATH`).
    Sqlite,
    /// A server shared by several nodes (`postgres://...`).
    Postgres,
}

/// Key of the PostgreSQL advisory lock that serializes the catalog's
/// read-then-write transactions, as SQLite's single writer lock does.
const WRITE_LOCK_KEY: i64 = 0x6d6f_6e67_6f62_616b; // "mongobak"

/// The metadata store.
#[derive(Debug, Clone)]
pub struct Catalog {
    pool: AnyPool,
    engine: Engine,
    /// Wakes this process's background workers when work is queued.
    wakeups: Wakeups,
    /// The instance registry and when it was read (see `registry`).
    registry_cache: Arc<Mutex<Option<CachedRegistry>>>,
    /// Held by the one caller that reads the registry again.
    registry_refresh: Arc<tokio::sync::Mutex<()>>,
    /// Counts changes to the registry made through this catalog: a list
    /// read before a change is not cached after it.
    registry_changes: Arc<AtomicU64>,
}

/// Declares the focused stores of the catalog: each is a view of one part
/// of the domain over the catalog's one connection pool, made by the
/// catalog's accessor of the same name and cheap to make per call.
macro_rules! stores {
    ($($(#[$doc:meta])* $name:ident;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name<'a> {
            pub(crate) catalog: &'a Catalog,
        }
    )*};
}

stores! {
    /// The registered instances ([`InstanceStore::all`]).
    InstanceStore;
    /// Backups ([`Catalog::backups`]).
    BackupStore;
    /// Download tasks ([`Catalog::downloads`]).
    DownloadStore;
    /// Backup rules ([`Catalog::rules`]).
    RuleStore;
    /// Saved oplog ([`Catalog::oplog`]).
    OplogStore;
    /// Point-in-time restores ([`Catalog::restores`]).
    RestoreStore;
    /// Singleton duties ([`Catalog::duties`]).
    DutyStore;
    /// Cluster-wide rate limits ([`Catalog::rate_limits`]).
    RateLimitStore;
    /// Used request signatures ([`Catalog::signatures`]).
    SignatureStore;
}

/// A query of the catalog's driver, with its parameters bound.
pub(crate) type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// A table of leased tasks (download and restore tasks): a worker holds a
/// running row (`lease_owner`) until `lease_expires_at`, and changes it
/// only while it holds it.
pub(crate) struct LeasedTasks {
    /// The table.
    pub table: &'static str,
    /// The status code of a running task.
    pub running: i64,
}

impl LeasedTasks {
    /// Runs `UPDATE <table> SET <set>` on task `id` only while `worker`
    /// holds its lease (the task is running and leased to it). Every
    /// change a worker makes goes through here, so one that lost the lease
    /// cannot overwrite the work of the one that took over. `set` numbers
    /// its parameters from `$3`; `bind` binds them in order. Returns
    /// whether the change took effect.
    pub(crate) async fn update_while_leased(
        &self,
        catalog: &Catalog,
        id: i64,
        worker: &str,
        set: &str,
        bind: impl for<'q> FnOnce(AnyQuery<'q>) -> AnyQuery<'q>,
    ) -> Result<bool, CatalogError> {
        let sql = format!(
            "UPDATE {} SET {set} WHERE id = $1 AND lease_owner = $2 AND status = {}",
            self.table, self.running
        );
        let query = bind(sqlx::query(&sql).bind(id).bind(worker));
        Ok(query.execute(catalog.pool()).await?.rows_affected() == 1)
    }

    /// Renews `worker`'s lease of task `id` and records its progress
    /// (0-99: 100 is for a finished task); false when the lease was lost.
    pub(crate) async fn heartbeat(
        &self,
        catalog: &Catalog,
        id: i64,
        worker: &str,
        percent: i64,
        lease_until: Timestamp,
    ) -> Result<bool, CatalogError> {
        let percent = percent.clamp(0, 99);
        self.update_while_leased(
            catalog,
            id,
            worker,
            "percent = $3, lease_expires_at = $4",
            |q| q.bind(percent).bind(lease_until.as_second()),
        )
        .await
    }
}

/// A domain type read from one row of its table.
pub(crate) trait FromRow: Sized {
    /// Decodes `row`; a value the domain does not know is
    /// [`CatalogError::Corrupt`].
    fn from_row(row: &AnyRow) -> Result<Self, CatalogError>;
}

/// The instance registry as read at an instant.
type CachedRegistry = (Instant, Arc<Vec<Instance>>);

/// How long the cached instance registry is trusted.
const REGISTRY_TTL: Duration = Duration::from_secs(1);

impl Catalog {
    /// Opens the store at `url` (`sqlite://PATH`, creating the file, or
    /// `postgres://USER@HOST/DB`) and brings its schema up to date.
    pub async fn open(url: &str) -> Result<Self, CatalogError> {
        sqlx::any::install_default_drivers();
        let unsupported = || CatalogError::UnsupportedUrl {
            url: url.to_string(),
        };
        let engine = if url.starts_with("sqlite:") {
            Engine::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Engine::Postgres
        } else {
            return Err(unsupported());
        };
        let mut connect_url = url.to_string();
        if engine == Engine::Sqlite {
            let path = url
                .strip_prefix("sqlite://")
                .or_else(|| url.strip_prefix("sqlite:"))
                .ok_or_else(unsupported)?;
            let (file, query) = path.split_once('?').unwrap_or((path, ""));
            if let Some(parent) = std::path::Path::new(file).parent() {
                if !parent.as_os_str().is_empty() && file != ":memory:" {
                    std::fs::create_dir_all(parent).map_err(|source| CatalogError::CreateDir {
                        path: parent.display().to_string(),
                        source,
                    })?;
                }
            }
            if !query.contains("mode=") {
                // Read, write, create.
                let separator = if query.is_empty() { '?' } else { '&' };
                connect_url = format!("{url}{separator}mode=rwc");
            }
        }
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            // A liveness round trip on every checkout costs more than the
            // queries; a broken connection fails its query anyway.
            .test_before_acquire(false)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if engine == Engine::Sqlite {
                        // WAL: readers never wait for the writer. The busy
                        // timeout makes a second writer wait its turn.
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000; \
                             PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect(&connect_url)
            .await?;
        match engine {
            Engine::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&pool).await?,
            Engine::Postgres => sqlx::migrate!("./migrations/postgres").run(&pool).await?,
        }
        Ok(Catalog {
            pool,
            engine,
            wakeups: Wakeups::default(),
            registry_cache: Arc::new(Mutex::new(None)),
            registry_refresh: Arc::new(tokio::sync::Mutex::new(())),
            registry_changes: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The engine behind this catalog.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A transaction that takes the catalog's write lock at once, for
    /// every read-then-write transaction (a check then an insert must not
    /// interleave with another's).
    ///
    /// SQLite: `BEGIN IMMEDIATE`. A deferred transaction that reads and then
    /// writes cannot wait for the lock in WAL mode (SQLite answers "database
    /// is locked" at once); this one waits its turn under the busy timeout.
    /// PostgreSQL: a transaction-scoped advisory lock, held by one node's
    /// transaction at a time and released at commit or rollback.
    pub(crate) async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, CatalogError> {
        match self.engine {
            Engine::Sqlite => Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?),
            Engine::Postgres => {
                let mut tx = self.pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(WRITE_LOCK_KEY)
                    .execute(&mut *tx)
                    .await?;
                Ok(tx)
            }
        }
    }

    /// What a claiming sub-select appends so that concurrent claimers on
    /// other nodes skip each other's rows instead of queueing behind them
    /// (PostgreSQL); SQLite has one writer at a time anyway.
    pub(crate) fn skip_locked(&self) -> &'static str {
        match self.engine {
            Engine::Sqlite => "",
            Engine::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }

    /// The registered instances.
    pub fn instances(&self) -> InstanceStore<'_> {
        InstanceStore { catalog: self }
    }

    /// Backups: their life cycle and queue.
    pub fn backups(&self) -> BackupStore<'_> {
        BackupStore { catalog: self }
    }

    /// Download tasks: their leased, retrying queue and published files.
    pub fn downloads(&self) -> DownloadStore<'_> {
        DownloadStore { catalog: self }
    }

    /// Automatic backup rules and the schedule they define.
    pub fn rules(&self) -> RuleStore<'_> {
        RuleStore { catalog: self }
    }

    /// Continuous oplog backup: positions, slices and gaps.
    pub fn oplog(&self) -> OplogStore<'_> {
        OplogStore { catalog: self }
    }

    /// Point-in-time restores and flashbacks: leased tasks.
    pub fn restores(&self) -> RestoreStore<'_> {
        RestoreStore { catalog: self }
    }

    /// Singleton duties, held by one node at a time.
    pub fn duties(&self) -> DutyStore<'_> {
        DutyStore { catalog: self }
    }

    /// Cluster-wide rate limits.
    pub fn rate_limits(&self) -> RateLimitStore<'_> {
        RateLimitStore { catalog: self }
    }

    /// The cluster-wide memory of used request signatures.
    pub fn signatures(&self) -> SignatureStore<'_> {
        SignatureStore { catalog: self }
    }

    /// The wake-ups of this process's background workers.
    pub fn wakeups(&self) -> &Wakeups {
        &self.wakeups
    }

    /// Runs `query` and decodes the row it returns, if any.
    pub(crate) async fn fetch_optional<T: FromRow>(
        &self,
        query: AnyQuery<'_>,
    ) -> Result<Option<T>, CatalogError> {
        let row = query.fetch_optional(&self.pool).await?;
        row.as_ref().map(T::from_row).transpose()
    }

    /// Runs `query` and decodes every row it returns.
    pub(crate) async fn fetch_all<T: FromRow>(
        &self,
        query: AnyQuery<'_>,
    ) -> Result<Vec<T>, CatalogError> {
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(T::from_row).collect()
    }

    /// Checks that the store answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), CatalogError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// The registered instances, read at most every [`REGISTRY_TTL`].
    ///
    /// Almost every API call looks an instance up, while the registry
    /// changes only when an operator adds or removes one; a query per call
    /// cost more than the rest of the request. Changes made through this
    /// catalog clear the cache at once; changes made by another process
    /// (`mongobak instance add` beside a running server, another node) show
    /// within the TTL.
    ///
    /// When the cached list has expired, one caller reads it again while
    /// the others go on with the expired one, so that the moment of expiry
    /// is not a burst of identical queries (a latency spike every second
    /// under load). With no list at all (first use, or just cleared by a
    /// change) every caller waits for the fresh one.
    pub(crate) async fn registry(&self) -> Result<Arc<Vec<Instance>>, CatalogError> {
        let cached = self.cached_registry();
        let _refreshing = match cached {
            Some((read_at, list)) if read_at.elapsed() < REGISTRY_TTL => return Ok(list),
            Some((_, stale)) => match self.registry_refresh.try_lock() {
                Ok(guard) => guard,
                Err(_) => return Ok(stale),
            },
            None => {
                let guard = self.registry_refresh.lock().await;
                // Read while this caller waited for the lock?
                if let Some((read_at, list)) = self.cached_registry() {
                    if read_at.elapsed() < REGISTRY_TTL {
                        return Ok(list);
                    }
                }
                guard
            }
        };
        let changes = self.registry_changes.load(Ordering::SeqCst);
        let rows = sqlx::query(&format!("{SELECT_INSTANCE} ORDER BY created_at, id"))
            .fetch_all(&self.pool)
            .await?;
        let list = Arc::new(
            rows.iter()
                .map(decode_instance)
                .collect::<Result<Vec<_>, _>>()?,
        );
        let mut cache = self
            .registry_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if self.registry_changes.load(Ordering::SeqCst) == changes {
            *cache = Some((Instant::now(), list.clone()));
        }
        Ok(list)
    }

    fn cached_registry(&self) -> Option<CachedRegistry> {
        self.registry_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn forget_registry(&self) {
        self.registry_changes.fetch_add(1, Ordering::SeqCst);
        *self
            .registry_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// A nullable Unix-seconds column as a time; `what` names the row in the
/// error when the value is out of range.
pub(crate) fn time_column(
    row: &AnyRow,
    column: &str,
    what: &str,
) -> Result<Option<Timestamp>, CatalogError> {
    let seconds: Option<i64> = row.try_get(column)?;
    seconds
        .map(|s| {
            Timestamp::from_second(s).map_err(|_| CatalogError::Corrupt {
                what: what.to_string(),
                detail: format!("{column} is out of range"),
            })
        })
        .transpose()
}
