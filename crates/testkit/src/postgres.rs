//! Fresh PostgreSQL databases for tests that run the metadata store on
//! PostgreSQL: each [`TestDatabase`] is a new, empty database on the
//! machine's server (`$MONGOBAK_TEST_POSTGRES`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`), dropped when the value
//! is dropped.

use sqlx::{Connection, Executor, PgConnection};

/// The server tests create their databases on.
pub fn admin_url() -> String {
    std::env::var("MONGOBAK_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// A database of its own for one test.
pub struct TestDatabase {
    /// `postgres://.../<name>`: give it to `Catalog::open` or a config.
    pub url: String,
    name: String,
}

impl TestDatabase {
    /// Creates an empty database with a unique name.
    pub async fn create() -> TestDatabase {
        let admin = admin_url();
        let mut conn = PgConnection::connect(&admin).await.unwrap_or_else(|e| {
            panic!("PostgreSQL at {admin} does not answer ({e}); start it or set MONGOBAK_TEST_POSTGRES")
        });
        let name = format!("mongobak_test_{}_{}", std::process::id(), rand_suffix());
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("CREATE DATABASE");
        let (base, _) = admin
            .rsplit_once('/')
            .expect("the admin URL names a database");
        TestDatabase {
            url: format!("{base}/{name}"),
            name,
        }
    }
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{nanos}_{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // A runtime of its own: the test's may be shutting down.
        let dropped = on_a_runtime_of_its_own(async move {
            let mut conn = PgConnection::connect(&admin_url()).await?;
            conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                .await
                .map(drop)
        });
        if let Err(e) = dropped {
            eprintln!("cannot drop test database {}: {e}", self.name);
        }
    }
}

/// When `MONGOBAK_TEST_METADATA=postgres`, the URL of a database kept for
/// `key` (a server's data folder: a restarted server finds its metadata
/// again), created on first use; otherwise `None` (SQLite in the data
/// folder). These databases are named `mongobak_keyed_*`; `scripts/test`
/// drops them before the PostgreSQL pass.
pub fn keyed_database(key: &str) -> Option<String> {
    if std::env::var("MONGOBAK_TEST_METADATA").as_deref() != Ok("postgres") {
        return None;
    }
    let name = format!("mongobak_keyed_{:016x}", fnv1a(key.as_bytes()));
    let admin = admin_url();
    let (base, _) = admin
        .rsplit_once('/')
        .expect("the admin URL names a database");
    let url = format!("{base}/{name}");
    let created = on_a_runtime_of_its_own(async move {
        let mut conn = PgConnection::connect(&admin_url()).await?;
        let exists: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
                .bind(&name)
                .fetch_optional(&mut conn)
                .await?;
        if exists.is_none() {
            conn.execute(format!("CREATE DATABASE {name}").as_str())
                .await?;
        }
        Ok::<_, sqlx::Error>(())
    });
    if let Err(e) = created {
        panic!("cannot create a test database on {admin}: {e}");
    }
    Some(url)
}

/// Runs `work` to its end on a thread and runtime of its own, from sync
/// code that may itself be inside a runtime (a `Drop`, a test's set-up).
fn on_a_runtime_of_its_own<T: Send + 'static>(
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(work)
    })
    .join()
    .expect("the database thread")
}

/// FNV-1a: a stable name for a key, with no dependency.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
