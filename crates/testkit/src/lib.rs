//! Test fixtures shared by the crates' integration tests.
//!
//! * [`MongoServer`]: a SecantusDB server (the real MongoDB wire protocol
//!   over WiredTiger, with an oplog) on a free port and a fresh data folder,
//!   stopped by its process id when dropped. The `secantusd-py` launcher
//!   comes from the project's `.venv` (installed by `scripts/test`), or from
//!   `$SECANTUSD`.
//! * [`seed`]: a data set with every BSON type, several index kinds,
//!   collection options, a view, a document near 16 MiB, an empty
//!   collection, and unicode and dotted names.
//! * [`snapshot`]: every namespace's documents (raw bytes), indexes and
//!   options, for comparing two states.
//! * [`postgres`]: a fresh PostgreSQL database per test, dropped after.
//! * [`moto`]: an S3 server (moto) on a free port, stopped by its process
//!   id when dropped.
//! * [`storage`]: the suites' choice of storage for a server: its data
//!   folder, or a prefix of a shared S3 bucket (`MONGOBAK_TEST_STORAGE=s3`).
//! * [`api`]: calls to a running mongobak, TC3-signed as one account, plain
//!   GETs of its URLs, and waits on its backups and download tasks.
//! * [`wait`]: polling a condition until a deadline, instead of fixed
//!   pauses.

pub mod api;
pub mod moto;
pub mod postgres;
pub mod seed;
pub mod snapshot;
pub mod storage;
pub mod wait;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use mongodb::bson::doc;
use mongodb::options::{ClientOptions, ServerAddress};
use mongodb::Client;

/// A running SecantusDB server.
pub struct MongoServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

/// Path of the `secantusd-py` launcher.
pub fn secantusd() -> PathBuf {
    if let Some(path) = std::env::var_os("SECANTUSD") {
        return PathBuf::from(path);
    }
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let path = workspace.join(".venv/bin/secantusd-py");
    assert!(
        path.exists(),
        "SecantusDB is not installed at {}: run scripts/test once (it installs tests/requirements.txt into .venv), \
         or set SECANTUSD to a secantusd-py launcher",
        path.display()
    );
    path
}

impl MongoServer {
    /// Starts a server on a free port and waits until it answers `hello`.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Starts a server with extra `secantusd-py` flags (`--standalone`,
    /// `--auth`, ...).
    pub async fn start_with(extra_args: &[&str]) -> Self {
        let mut dir = tempfile::tempdir().expect("a temporary folder");
        for _attempt in 0..5 {
            let port = free_port();
            let mut server = MongoServer {
                port,
                child: Some(spawn(port, &dir, extra_args)),
                dir,
            };
            let say_hello = !extra_args.contains(&"--auth");
            if server.wait_ready(Duration::from_secs(60), say_hello).await {
                return server;
            }
            dir = server.take_dir();
        }
        panic!("SecantusDB did not start within a minute, five times over");
    }

    /// Stops the server and starts it again on the same port and data with
    /// `extra_args` (for example `--auth` once users exist).
    pub async fn restart_with(&mut self, extra_args: &[&str]) {
        self.kill();
        self.child = Some(spawn(self.port, &self.dir, extra_args));
        let say_hello = !extra_args.contains(&"--auth");
        assert!(
            self.wait_ready(Duration::from_secs(60), say_hello).await,
            "SecantusDB did not restart"
        );
    }

    /// Stops the server and hands back its folder (for another attempt).
    fn take_dir(mut self) -> tempfile::TempDir {
        self.kill();
        std::mem::replace(
            &mut self.dir,
            tempfile::tempdir().expect("a temporary folder"),
        )
    }

    /// Waits until the port accepts connections and, when `say_hello`,
    /// until the server answers `hello` without credentials.
    async fn wait_ready(&mut self, limit: Duration, say_hello: bool) -> bool {
        let ready = wait::within(limit, async || {
            if let Some(child) = &mut self.child {
                if let Ok(Some(_)) = child.try_wait() {
                    return Some(false);
                }
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
                return None;
            }
            if !say_hello {
                return Some(true);
            }
            let ping = self
                .client()
                .database("admin")
                .run_command(doc! {"hello": 1})
                .await;
            ping.is_ok().then_some(true)
        })
        .await;
        ready.unwrap_or(false)
    }

    /// Its connection URI.
    pub fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}/?directConnection=true", self.port)
    }

    /// A driver client for it.
    pub fn client(&self) -> Client {
        let options = ClientOptions::builder()
            .hosts(vec![ServerAddress::Tcp {
                host: "127.0.0.1".into(),
                port: Some(self.port),
            }])
            .direct_connection(true)
            .server_selection_timeout(Duration::from_secs(10))
            .build();
        Client::with_options(options).expect("a client")
    }

    /// Kills the server at once (SIGKILL, by process id).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for MongoServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(port: u16, dir: &tempfile::TempDir, extra_args: &[&str]) -> Child {
    let log = std::fs::File::create(dir.path().join(format!("secantusd-{port}.log")))
        .expect("a log file");
    Command::new(secantusd())
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--storage-path",
        ])
        .arg(dir.path().join("data"))
        .args(["--enable-test-commands", "--log-level", "WARNING"])
        .args(extra_args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("a log file handle"))
        .stderr(log)
        .spawn()
        .expect("secantusd-py starts")
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
