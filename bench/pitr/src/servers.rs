//! The processes the harness runs: the SecantusDB server (`secantusd-py`),
//! source of the oplog and target of the replay, and `mongobak serve`,
//! which tails that oplog; with what is read from them while they run
//! (the lag on the admin listener's `/metrics`, the saved oplog in the
//! metadata database, memory from `/proc`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bench_support::process::{first_line, ChildGuard, Server, SERVER_PID};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::Row;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The instance registered in `mongobak serve`'s configuration.
pub const INSTANCE: &str = "cmgo-pitrbnch";
/// Its only replica set.
pub const REPLICA_SET: &str = "cmgo-pitrbnch_0";

/// How long `mongobak serve` may take to print its address.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a SIGTERMed `mongobak serve` may take to stop before it is
/// killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the SecantusDB Python server is: `given`, else `$SECANTUSD`, else
/// `secantusd-py` on PATH, else the workspace's `.venv/bin/secantusd-py`
/// (where `scripts/test` installs it).
pub fn find_secantusd_py(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = given {
        if path.is_file() {
            return Ok(path.to_path_buf());
        }
        bail!("--secantusd {} does not exist", path.display());
    }
    if let Some(path) = std::env::var_os("SECANTUSD") {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        bail!("SECANTUSD={} does not exist", path.display());
    }
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("secantusd-py"))
                .collect()
        })
        .unwrap_or_default();
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/secantusd-py"));
    candidates.into_iter().find(|p| p.is_file()).context(
        "secantusd-py not found ($SECANTUSD, PATH, .venv/bin): run scripts/test once \
         (it installs tests/requirements.txt into .venv), or pass --secantusd FILE",
    )
}

/// `mongobak` beside this binary (`target/release/mongobak`).
pub fn find_mongobak(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let path = match given {
        Some(path) => path.to_path_buf(),
        None => std::env::current_exe()?
            .parent()
            .context("the harness's folder")?
            .join("mongobak"),
    };
    if !path.is_file() {
        bail!(
            "{} does not exist: build it with `cargo build --release -p mongobak`, or pass --mongobak FILE",
            path.display()
        );
    }
    Ok(path)
}

/// Oplog entries the servers of the capture half and the one the changes
/// are made on keep: more than a run writes, so nothing is pruned.
pub const OPLOG_KEEP_ALL: &str = "2000000";

/// Starts a fresh SecantusDB server named `name`: a single-node replica
/// set with its data in `dir/name` and its log in `dir/name.log`, a no-op
/// in its oplog every second (as MongoDB writes every 10 s, so that the
/// lag of an idle moment stays meaningful), its oplog capped at
/// `oplog_max_entries`. The pid is kept for the clean-up on a signal.
pub fn start_server(
    binary: &Path,
    dir: &Path,
    name: &str,
    oplog_max_entries: &str,
) -> anyhow::Result<Server> {
    let log = dir.join(format!("{name}.log"));
    let server = Server::start_on_free_port(binary, &dir.join(name), dir, &log, |command| {
        command.args([
            "--noop-heartbeat-seconds",
            "1",
            "--oplog-max-entries",
            oplog_max_entries,
        ]);
    })?;
    SERVER_PID.store(server.pid(), Ordering::SeqCst);
    Ok(server)
}

/// Stops a server started by [`start_server`].
pub fn stop_server(server: Server) -> anyhow::Result<()> {
    let stopped = server.stop();
    SERVER_PID.store(0, Ordering::SeqCst);
    stopped
}

/// Writes the configuration of `mongobak serve`: its data (SQLite
/// catalog, local blob store) in `data_dir`, an admin listener for
/// `/metrics`, continuous oplog backup on with its defaults, automatic
/// backups off, and the source registered as the one instance.
pub fn write_config(dir: &Path, data_dir: &Path, source_uri: &str) -> anyhow::Result<PathBuf> {
    let data = data_dir.to_str().context("the data folder is not UTF-8")?;
    let text = format!(
        "[server]\n\
         listen = \"127.0.0.1:0\"\n\
         admin_listen = \"127.0.0.1:0\"\n\
         data_dir = \"{data}\"\n\
         min_free_disk_mib = 0\n\
         \n\
         [backups]\n\
         automatic = false\n\
         \n\
         [pitr]\n\
         enabled = true\n\
         \n\
         [[instances]]\n\
         id = \"{INSTANCE}\"\n\
         name = \"benchpitr\"\n\
         replica_sets = [\"{source_uri}\"]\n"
    );
    let path = dir.join("mongobak.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// A running `mongobak serve`.
pub struct Mongobak {
    child: ChildGuard,
    /// Its admin listener.
    pub admin: SocketAddr,
}

impl Mongobak {
    /// Starts `binary serve --config config`, its info log appended to
    /// `log`, and reads the admin listener's address from its first line.
    /// Call from the main thread: the child dies with the thread that
    /// started it.
    pub fn start(binary: &Path, config: &Path, log: &Path) -> anyhow::Result<Mongobak> {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        let mut command = Command::new(binary);
        command.arg("serve").arg("--config").arg(config);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("MONGOBAK_") {
                command.env_remove(key);
            }
        }
        command
            .env("MONGOBAK_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file);
        let mut child = ChildGuard::spawn(&mut command, binary)?;
        let stdout = child
            .0
            .as_mut()
            .and_then(|c| c.stdout.take())
            .context("stdout is piped")?;
        // `mongobak admin listening on http://ADDR` comes first.
        let line = match first_line(stdout, STARTUP_TIMEOUT) {
            Ok(Some(line)) => line,
            _ => bail!(
                "mongobak serve printed no line within {} s; see {}",
                STARTUP_TIMEOUT.as_secs(),
                log.display()
            ),
        };
        let admin = line
            .trim()
            .strip_prefix("mongobak admin listening on http://")
            .and_then(|addr| addr.parse().ok())
            .with_context(|| {
                format!(
                    "unexpected first line from mongobak serve: {line:?}; see {}",
                    log.display()
                )
            })?;
        Ok(Mongobak { child, admin })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Fails if it has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(child) = self.child.0.as_mut() {
            if let Some(status) = child.try_wait()? {
                self.child.0 = None;
                bail!("mongobak serve exited during the run: {status}");
            }
        }
        Ok(())
    }

    /// SIGTERM, and waits for it to exit (killed after a minute); its
    /// peak RSS in KiB (`ru_maxrss` from `wait4`).
    pub fn stop(mut self) -> anyhow::Result<u64> {
        self.check_alive()?;
        let pid = self.pid() as libc::pid_t;
        // SAFETY: the pid is our unreaped child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            let mut status = 0;
            // SAFETY: an all-zero rusage is valid; wait4 fills it.
            let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: pid is our unreaped child; both pointers are valid.
            let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
            if r == pid {
                self.child.0 = None;
                return Ok(usage.ru_maxrss.max(0) as u64);
            }
            if Instant::now() >= deadline {
                bail!("mongobak serve ignored SIGTERM for a minute; killing it");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `mongobak_oplog_lag_seconds` of the replica set on the admin listener's
/// `/metrics`, once it shows.
pub async fn lag(admin: SocketAddr) -> Option<f64> {
    let text = get(admin, "/metrics").await.ok()?;
    let prefix = format!("mongobak_oplog_lag_seconds{{replica_set=\"{REPLICA_SET}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .and_then(|value| value.trim().parse().ok())
}

/// The body of a plain HTTP/1.1 GET of `path`.
async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut stream =
        tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
            .await??;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response)).await??;
    let text = String::from_utf8_lossy(&response).into_owned();
    match text.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_string()),
        _ => bail!("GET {path}: {}", text.lines().next().unwrap_or("no answer")),
    }
}

/// `mongobak serve`'s metadata database (SQLite), read-only, beside it.
pub struct Catalog {
    pool: SqlitePool,
}

impl Catalog {
    /// Opens `meta.db` in `data_dir` once `mongobak serve` has created it.
    pub async fn open(data_dir: &Path) -> anyhow::Result<Catalog> {
        let path = data_dir.join("meta.db");
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while !path.is_file() {
            if Instant::now() >= deadline {
                bail!("mongobak serve created no {}", path.display());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .read_only(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        Ok(Catalog { pool })
    }

    /// The saved position of the replica set (seconds << 32 | increment),
    /// once its tailer began.
    pub async fn sealed(&self) -> anyhow::Result<Option<i64>> {
        let row = sqlx::query("SELECT sealed_ts FROM oplog_positions WHERE replica_set_id = ?")
            .bind(REPLICA_SET)
            .fetch_optional(&self.pool)
            .await;
        match row {
            Ok(row) => Ok(row.map(|r| r.get::<i64, _>(0))),
            // Before the migrations ran.
            Err(sqlx::Error::Database(e)) if e.message().contains("no such table") => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Entries in the replica set's slices sealed after position `after`.
    pub async fn captured(&self, after: i64) -> anyhow::Result<u64> {
        let row = sqlx::query(
            "SELECT COALESCE(SUM(entries), 0) FROM oplog_slices \
             WHERE replica_set_id = ? AND last_ts > ?",
        )
        .bind(REPLICA_SET)
        .bind(after)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.get::<i64, _>(0).max(0) as u64)
    }

    /// Closes the connection.
    pub async fn close(self) {
        self.pool.close().await;
    }
}

/// A field of `/proc/PID/status` in KiB (`VmRSS`, `VmHWM`).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| {
        l.strip_prefix(field)
            .is_some_and(|rest| rest.starts_with(':'))
    })?;
    line.split_whitespace().nth(1)?.parse().ok()
}
