//! Test support: a fresh catalog on each engine, and a macro that runs a
//! test body once on SQLite and once on PostgreSQL, so every query is
//! checked on both.

use std::ops::Deref;

use mongobak_testkit::postgres::TestDatabase;

use crate::store::{Catalog, Engine};

/// A fresh, empty catalog and what keeps its database alive.
pub(crate) struct TestCatalog {
    catalog: Catalog,
    url: String,
    _dir: Option<tempfile::TempDir>,
    _database: Option<TestDatabase>,
}

impl TestCatalog {
    pub(crate) async fn new(engine: Engine) -> TestCatalog {
        let (url, dir, database) = match engine {
            Engine::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}/sub/meta.db", dir.path().display());
                (url, Some(dir), None)
            }
            Engine::Postgres => {
                let database = TestDatabase::create().await;
                (database.url.clone(), None, Some(database))
            }
        };
        let catalog = Catalog::open(&url).await.unwrap();
        assert_eq!(catalog.engine(), engine);
        TestCatalog {
            catalog,
            url,
            _dir: dir,
            _database: database,
        }
    }

    /// Opens the same database again (as a restarted process would).
    pub(crate) async fn reopen(&self) -> Catalog {
        Catalog::open(&self.url).await.unwrap()
    }
}

impl Deref for TestCatalog {
    type Target = Catalog;

    fn deref(&self) -> &Catalog {
        &self.catalog
    }
}

/// For each `name`, declares a module `name` with two tests, `sqlite` and
/// `postgres`, that run `async fn name(TestCatalog)` of the enclosing
/// module on a fresh catalog of that engine.
macro_rules! on_each_engine {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(
                    crate::testing::TestCatalog::new(crate::store::Engine::Sqlite).await,
                )
                .await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(
                    crate::testing::TestCatalog::new(crate::store::Engine::Postgres).await,
                )
                .await
            }
        }
    )*};
}

pub(crate) use on_each_engine;
