//! Child processes: the SecantusDB source and the `mongobak serve` nodes.
//!
//! Each child gets `PR_SET_PDEATHSIG` (SIGKILL), so it dies with the
//! harness even if the harness is killed, and is killed by its process id
//! and reaped when its guard drops, on every path. Children are spawned
//! from the main thread, which drives the run and lives until the harness
//! ends (the death signal follows the thread that forked). Also the CPU
//! readings from `/proc` behind the report's CPU columns.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bench_support::process::die_with_parent;
use mongodb::bson::doc;
use mongodb::options::{ClientOptions, ServerAddress};

/// How long a node may take to print its listening line.
const NODE_STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long SecantusDB may take to answer `hello`, per attempt.
const SOURCE_STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Ports tried for SecantusDB (a free port may be taken before it binds).
const SOURCE_ATTEMPTS: usize = 5;

/// A child process, killed (SIGKILL, by pid) and reaped when dropped.
pub struct Proc {
    name: String,
    child: Option<Child>,
}

impl Proc {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Fails if the process has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(child) = &mut self.child {
            if let Some(status) = child.try_wait()? {
                bail!("{} exited during the run: {status}", self.name);
            }
        }
        Ok(())
    }

    /// Kills and reaps it now.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Spawns `command` (stdin closed) as a child that dies with the harness.
fn spawn(mut command: Command, name: &str) -> anyhow::Result<Proc> {
    die_with_parent(&mut command);
    let child = command
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {name}: {command:?}"))?;
    Ok(Proc {
        name: name.to_string(),
        child: Some(child),
    })
}

// ---------------------------------------------------------------------------
// The source.

/// The SecantusDB server the backups are taken from.
pub struct Source {
    /// The process.
    pub proc: Proc,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its stdout and stderr.
    pub log: PathBuf,
}

impl Source {
    /// Starts `secantusd-py` on a free port with its data in `dir` and its
    /// output in `log` (flags as `mongobak-testkit`'s `MongoServer`), and
    /// waits until it answers `hello`.
    pub async fn start(secantusd: &Path, dir: &Path, log: &Path) -> anyhow::Result<Source> {
        for _ in 0..SOURCE_ATTEMPTS {
            let port = free_port()?;
            let out = std::fs::File::create(log)?;
            let mut command = Command::new(secantusd);
            command
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .arg("--storage-path")
                .arg(dir.join("data"))
                .args(["--enable-test-commands", "--log-level", "WARNING"])
                .stdout(out.try_clone()?)
                .stderr(out);
            let mut source = Source {
                proc: spawn(command, "secantusd-py")?,
                port,
                log: log.to_path_buf(),
            };
            if source.wait_ready().await {
                return Ok(source);
            }
        }
        bail!(
            "SecantusDB did not answer within {SOURCE_STARTUP_TIMEOUT:?}, {SOURCE_ATTEMPTS} times over; its log:\n{}",
            log_tail(log, 20)
        )
    }

    async fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + SOURCE_STARTUP_TIMEOUT;
        while Instant::now() < deadline {
            if self.proc.check_alive().is_err() {
                return false;
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                if let Ok(client) = self.client() {
                    let hello = client
                        .database("admin")
                        .run_command(doc! {"hello": 1})
                        .await;
                    if hello.is_ok() {
                        return true;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// Its connection URI.
    pub fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}/?directConnection=true", self.port)
    }

    /// A driver client for it.
    pub fn client(&self) -> anyhow::Result<mongodb::Client> {
        let options = ClientOptions::builder()
            .hosts(vec![ServerAddress::Tcp {
                host: "127.0.0.1".into(),
                port: Some(self.port),
            }])
            .direct_connection(true)
            .server_selection_timeout(Duration::from_secs(10))
            .build();
        Ok(mongodb::Client::with_options(options)?)
    }
}

/// A port that was free a moment ago.
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

// ---------------------------------------------------------------------------
// The nodes.

/// A running `mongobak serve`.
pub struct Node {
    /// The process.
    pub proc: Proc,
    /// Where its API listens.
    pub addr: SocketAddr,
    /// Its log (JSON lines on stderr).
    pub log: PathBuf,
}

impl Node {
    /// Starts `<binary> serve --log-format json --config <config>`, its log
    /// in `log`, with no `MONGOBAK_*` variable of the harness's environment
    /// (they would override the file), and waits for its listening line.
    pub fn start(binary: &Path, config: &Path, log: &Path, name: &str) -> anyhow::Result<Node> {
        let mut command = Command::new(binary);
        command
            .args(["serve", "--log-format", "json", "--config"])
            .arg(config);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("MONGOBAK_") {
                command.env_remove(key);
            }
        }
        command
            .env("MONGOBAK_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log)?);
        let mut proc = spawn(command, name)?;
        let stdout = proc
            .child
            .as_mut()
            .and_then(|c| c.stdout.take())
            .context("stdout is piped")?;
        let (tx, rx) = std_mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref() {
                let Ok(line) = line else { return };
                if let Some(addr) = line.strip_prefix("mongobak listening on http://") {
                    let _ = tx.send(addr.trim().to_string());
                    break;
                }
            }
            // Keep the pipe drained until the node exits.
            for _ in lines {}
        });
        let Ok(addr) = rx.recv_timeout(NODE_STARTUP_TIMEOUT) else {
            bail!(
                "{name} printed no listening line within {NODE_STARTUP_TIMEOUT:?}; its log:\n{}",
                log_tail(log, 20)
            );
        };
        let addr = addr
            .parse()
            .with_context(|| format!("{name} printed an unexpected address: {addr:?}"))?;
        Ok(Node {
            proc,
            addr,
            log: log.to_path_buf(),
        })
    }

    /// Packaging attempts this node started and files it published, by
    /// its log's `packaging started` and `packaging done` lines.
    pub fn packaging(&self) -> (usize, usize) {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let (mut started, mut done) = (0, 0);
        for line in text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        {
            match line["fields"]["message"].as_str() {
                Some("packaging started") => started += 1,
                Some("packaging done") => done += 1,
                _ => {}
            }
        }
        (started, done)
    }
}

// ---------------------------------------------------------------------------
// Readings.

/// Clock ticks per second of `/proc` times.
fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if n > 0 {
        n as u64
    } else {
        100
    }
}

/// User + system CPU time of process `pid` so far.
pub fn process_cpu(pid: u32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // Fields after the command name, which may hold spaces: utime and
    // stime are the 12th and 13th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u64 = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    Duration::from_secs_f64(ticks as f64 / ticks_per_second() as f64)
}

/// CPU time the whole machine has spent busy (every state but idle and
/// iowait), summed over its cores.
pub fn machine_busy() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return Duration::ZERO;
    };
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return Duration::ZERO;
    };
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest is in user).
    let busy: u64 = fields
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| v)
        .sum();
    Duration::from_secs_f64(busy as f64 / ticks_per_second() as f64)
}

/// The 1, 5 and 15 minute load averages.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".into())
}

/// The last `lines` lines of a log file.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
