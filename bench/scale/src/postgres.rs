//! Fresh PostgreSQL databases for the harness, one per use
//! (`mongobak_bench_scale_<pid>_<what>`), created on the server of
//! `--postgres` and dropped `WITH (FORCE)` when their guard drops, also when
//! the run fails or is interrupted.

use anyhow::Context;
use sqlx::{Connection, Executor, PgConnection};

/// A database of the harness's own.
pub struct Database {
    /// `postgres://.../<name>`, for a `[metadata] url` or `Catalog::open`.
    pub url: String,
    name: String,
    admin: String,
}

impl Database {
    /// Creates an empty database named for this process and `what` (an
    /// identifier: letters, digits, `_`), dropping a leftover of that name.
    pub async fn create(admin: &str, what: &str) -> anyhow::Result<Database> {
        let name = format!("mongobak_bench_scale_{}_{what}", std::process::id());
        let (base, _) = admin.rsplit_once('/').context(
            "--postgres must name a database, like postgres://postgres@127.0.0.1:5432/postgres",
        )?;
        let mut conn = PgConnection::connect(admin)
            .await
            .with_context(|| format!("PostgreSQL at {admin} does not answer"))?;
        conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
            .await?;
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .with_context(|| format!("CREATE DATABASE {name}"))?;
        conn.close().await?;
        Ok(Database {
            url: format!("{base}/{name}"),
            name,
            admin: admin.to_string(),
        })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let (name, admin) = (self.name.clone(), self.admin.clone());
        // A runtime of its own: the harness's may be inside a poll, or
        // shutting down.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut conn = PgConnection::connect(&admin).await?;
                conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                    .await?;
                conn.close().await?;
                Ok::<_, anyhow::Error>(())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("bench-scale: cannot drop database {}: {e:#}", self.name),
            Err(_) => eprintln!("bench-scale: cannot drop database {}", self.name),
        }
    }
}
