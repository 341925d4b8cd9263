//! A real S3 server for tests: moto's `moto_server` (from PyPI, pinned in
//! tests/requirements.txt and installed into `.venv` by scripts/test),
//! started on a free loopback port and killed by its process ID when the
//! guard is dropped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::Mutex;

use crate::wait::eventually;

/// How long the server may take to listen, and then to answer.
const START_LIMIT: Duration = Duration::from_secs(60);

/// A running moto server.
pub struct Moto {
    child: Option<Child>,
    port: u16,
}

impl Moto {
    /// Starts a server of its own on a free port.
    pub async fn start() -> Moto {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut moto = Moto { child: None, port };
        moto.restart().await;
        moto
    }

    /// The server shared by the tests that run at the same time; it stops
    /// when the last of them drops it.
    pub async fn shared() -> Arc<Moto> {
        static SHARED: Mutex<Weak<Moto>> = Mutex::const_new(Weak::new());
        let mut shared = SHARED.lock().await;
        if let Some(moto) = shared.upgrade() {
            return moto;
        }
        let moto = Arc::new(Moto::start().await);
        *shared = Arc::downgrade(&moto);
        moto
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on its port and waits until it answers.
    /// Its buckets are gone: moto keeps them in memory.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let bin = binary();
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        self.child = Some(child);
        let port = self.port;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let child = &mut self.child;
        eventually(START_LIMIT, "moto_server listening", async || {
            if let Some(status) = child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("moto_server exited at start ({status}); is port {port} taken?");
            }
            TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                .ok()
                .map(drop)
        })
        .await;
        // The first request loads moto's S3 backend: wait for it here, not
        // inside a test's timeouts.
        let (http, endpoint) = (http(), self.endpoint());
        eventually(START_LIMIT, "moto_server answering", async || {
            http.get(&endpoint).send().await.ok().map(drop)
        })
        .await;
    }

    /// Kills the server (by its process ID) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections are accepted by the kernel
    /// and never answered, as with a hung storage server.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// Lets a paused server go on after `delay`, from another thread.
    pub fn resume_after(&self, delay: Duration) -> std::thread::JoinHandle<()> {
        let pid = self.pid();
        std::thread::spawn(move || {
            // The pause is the point: the store hangs for `delay`.
            std::thread::sleep(delay);
            send_signal(pid, "-CONT");
        })
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    fn signal(&self, signal: &str) {
        send_signal(self.pid(), signal);
    }

    /// Creates a bucket (moto takes unsigned requests).
    pub async fn create_bucket(&self, bucket: &str) {
        let resp = http()
            .put(format!("{}/{bucket}", self.endpoint()))
            .send()
            .await
            .expect("create the bucket");
        assert!(
            resp.status().is_success(),
            "create bucket: {}",
            resp.status()
        );
    }

    /// How many multipart uploads of `bucket` are begun and neither
    /// completed nor aborted.
    pub async fn open_uploads(&self, bucket: &str) -> usize {
        let body = http()
            .get(format!("{}/{bucket}?uploads", self.endpoint()))
            .send()
            .await
            .expect("list multipart uploads")
            .text()
            .await
            .expect("the listing");
        assert!(body.contains("ListMultipartUploadsResult"), "{body}");
        body.matches("<Upload>").count()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            // A paused server must go on to be able to exit.
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
        }
        self.kill();
    }
}

/// Signals the process `pid`, by its ID.
fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill {signal} {pid}");
}

/// A plain HTTP client for what the store does not do (bucket creation,
/// fetching presigned URLs): the suites' own.
pub fn http() -> reqwest::Client {
    crate::api::http_client()
}

/// `$MOTO_SERVER`, else `<repo>/.venv/bin/moto_server`.
fn binary() -> PathBuf {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let bin = std::env::var_os("MOTO_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join(".venv/bin/moto_server"));
    assert!(
        bin.is_file(),
        "the S3 tests need moto_server, not found at {}: run scripts/test, which \
         installs .venv from tests/requirements.txt (or set MOTO_SERVER)",
        bin.display()
    );
    bin
}
