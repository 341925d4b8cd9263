//! Child processes of a benchmark harness: each tied to the harness with
//! `PR_SET_PDEATHSIG` and killed and reaped by its process id on every
//! path, so nothing outlives a run; the SecantusDB server the harnesses
//! measure against; the clean-up on SIGINT and SIGTERM;
//! where the `secantusd-rs` server is; and the CPU time readings from
//! `/proc` that the harnesses' CPU columns come from.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// How long the server may take to print its address.
const SERVER_STARTUP_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a SIGTERMed server may take to stop before it is killed.
const SERVER_STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// Makes the child die with this thread (the main thread, which lives until
/// the end), so nothing outlives a killed harness.
pub fn die_with_parent(command: &mut Command) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// A child process killed and reaped when dropped, unless it was reaped.
pub struct ChildGuard(pub Option<Child>);

impl ChildGuard {
    /// Spawns `command` (running `binary`), to die with this process.
    pub fn spawn(command: &mut Command, binary: &Path) -> anyhow::Result<ChildGuard> {
        die_with_parent(command);
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        Ok(ChildGuard(Some(child)))
    }

    /// The child's process id (0 once reaped).
    pub fn pid(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }

    /// Waits for the child with `wait4`: its exit status and its own
    /// resource usage (peak RSS, CPU times), not summed with other children.
    pub fn wait_rusage(&mut self) -> anyhow::Result<(i32, libc::rusage)> {
        let pid = self.pid() as libc::pid_t;
        let mut status = 0;
        // SAFETY: an all-zero rusage is valid; wait4 fills it.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        loop {
            // SAFETY: pid is our unreaped child; both pointers are valid.
            let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
            if r == pid {
                break;
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                bail!("wait4({pid}) failed: {e}");
            }
        }
        // Reaped: the pid is no longer ours to kill.
        self.0 = None;
        Ok((status, usage))
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The SecantusDB server.
pub struct Server {
    child: ChildGuard,
    addr: SocketAddr,
}

impl Server {
    /// Starts `binary` on a free port of 127.0.0.1 with its data in `data`,
    /// in `cwd` (so no stray `./secantusd.toml` is picked up) and its stderr
    /// appended to `log`, and reads the bound address from its first stdout
    /// line. `configure` adds the harness's own arguments, environment and
    /// so on to the command before it is spawned.
    pub fn start(
        binary: &Path,
        data: &Path,
        cwd: &Path,
        log: &Path,
        configure: impl FnOnce(&mut Command),
    ) -> anyhow::Result<Server> {
        let log_file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        let mut command = Command::new(binary);
        command
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--log-level",
                "WARNING",
            ])
            .arg("--storage-path")
            .arg(data)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file);
        configure(&mut command);
        let mut child = ChildGuard::spawn(&mut command, binary)?;
        let stdout = child
            .0
            .as_mut()
            .and_then(|c| c.stdout.take())
            .context("stdout is piped")?;
        let hint = if log == Path::new("/dev/null") {
            "; rerun with --server-log FILE to see its log".to_string()
        } else {
            format!("; see {}", log.display())
        };
        // `secantusd-rs listening on 127.0.0.1:PORT`.
        let line = match first_line(stdout, SERVER_STARTUP_TIMEOUT) {
            Ok(Some(line)) => line,
            Err(e) => bail!("cannot read the server's stdout: {e}"),
            Ok(None) => bail!(
                "the server printed no line within {} s{hint}",
                SERVER_STARTUP_TIMEOUT.as_secs()
            ),
        };
        let Some(addr) = line
            .trim()
            .rsplit_once("listening on ")
            .and_then(|(_, a)| a.trim().parse::<SocketAddr>().ok())
        else {
            bail!("the server did not start: first stdout line {line:?}{hint}");
        };
        Ok(Server { child, addr })
    }

    /// Starts `binary` as [`Server::start`] does, for a server that does
    /// not print its address (`secantusd-py`): on a port of 127.0.0.1 that
    /// was free a moment ago, waiting until it accepts connections (a few
    /// tries with another port if the server exits at start, the port
    /// having been taken meanwhile). Its stdout goes to `log` as well.
    pub fn start_on_free_port(
        binary: &Path,
        data: &Path,
        cwd: &Path,
        log: &Path,
        configure: impl Fn(&mut Command),
    ) -> anyhow::Result<Server> {
        let mut last_exit = None;
        for _attempt in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            let log_file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .with_context(|| format!("cannot open {}", log.display()))?;
            let mut command = Command::new(binary);
            command
                .args(["--host", "127.0.0.1", "--port"])
                .arg(port.to_string())
                .args(["--log-level", "WARNING"])
                .arg("--storage-path")
                .arg(data)
                .current_dir(cwd)
                .stdin(Stdio::null())
                .stdout(log_file.try_clone()?)
                .stderr(log_file);
            configure(&mut command);
            let mut child = ChildGuard::spawn(&mut command, binary)?;
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let deadline = Instant::now() + SERVER_STARTUP_TIMEOUT;
            loop {
                if let Some(status) = child.0.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                    child.0 = None;
                    last_exit = Some(status);
                    break;
                }
                if std::net::TcpStream::connect(addr).is_ok() {
                    return Ok(Server { child, addr });
                }
                if Instant::now() >= deadline {
                    bail!(
                        "the server did not accept connections on {addr} within {} s; see {}",
                        SERVER_STARTUP_TIMEOUT.as_secs(),
                        log.display()
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        bail!(
            "the server exited at start three times (last: {}); see {}",
            last_exit.map_or_else(|| "?".to_string(), |s| s.to_string()),
            log.display()
        )
    }

    /// The server's URI, connecting to it directly.
    pub fn uri(&self) -> String {
        format!("mongodb://{}/?directConnection=true", self.addr)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Stops the server; fails if it had exited on its own.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.terminate()
    }

    /// SIGTERM (a clean WiredTiger close, so a kept data folder opens fast
    /// next time); if it still runs after a minute, the guard kills it.
    fn terminate(&mut self) -> anyhow::Result<()> {
        let Some(child) = self.child.0.as_mut() else {
            return Ok(());
        };
        if let Some(status) = child.try_wait()? {
            self.child.0 = None;
            bail!("the server exited during the run: {status}");
        }
        // SAFETY: the pid is our unreaped child.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + SERVER_STOP_TIMEOUT;
        while Instant::now() < deadline {
            if child.try_wait()?.is_some() {
                self.child.0 = None;
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("the SecantusDB server ignored SIGTERM for a minute; killing it");
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.terminate();
    }
}

/// The first line a child prints on `stdout`, waiting at most `timeout`
/// (`Ok(None)` if none came by then). A thread drains the rest of the
/// output afterwards, so the child never blocks on a full pipe.
pub fn first_line(stdout: ChildStdout, timeout: Duration) -> std::io::Result<Option<String>> {
    let (tx, rx) = std_mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let first = reader.read_line(&mut line).map(|_| line);
        let _ = tx.send(first);
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    });
    match rx.recv_timeout(timeout) {
        Ok(first) => first.map(Some),
        Err(_) => Ok(None),
    }
}

/// The running server, for the signal handler.
pub static SERVER_PID: AtomicU32 = AtomicU32::new(0);

/// On SIGINT or SIGTERM: stop the server ([`SERVER_PID`]), delete the
/// run's temporary folder and exit 130; `harness` names the binary in the
/// message. A measurement child dies with this process
/// (`PR_SET_PDEATHSIG`).
pub fn clean_up_on_signal(tmp: PathBuf, harness: &'static str) {
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        let signalled = runtime.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut interrupt), Ok(mut terminate)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return false;
            };
            tokio::select! {
                _ = interrupt.recv() => true,
                _ = terminate.recv() => true,
            }
        });
        if !signalled {
            return;
        }
        eprintln!("{harness}: interrupted; stopping the server");
        let pid = SERVER_PID.load(Ordering::SeqCst) as libc::pid_t;
        if pid > 0 {
            // SAFETY: plain syscalls on our own child's pid; it is only
            // killed while unreaped (waitpid returned 0), so never reused.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
                let deadline = Instant::now() + SERVER_STOP_TIMEOUT;
                let mut status = 0;
                while libc::waitpid(pid, &mut status, libc::WNOHANG) == 0 {
                    if Instant::now() >= deadline {
                        libc::kill(pid, libc::SIGKILL);
                        libc::waitpid(pid, &mut status, 0);
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        let _ = std::fs::remove_dir_all(&tmp);
        std::process::exit(130);
    });
}

/// Where the SecantusDB Rust server is: `given`, else `secantusd-rs` on
/// PATH, else `~/.cargo/bin/secantusd-rs`.
pub fn find_secantusd(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = given {
        if path.is_file() {
            return Ok(path.to_path_buf());
        }
        bail!("--secantusd {} does not exist", path.display());
    }
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("secantusd-rs"))
                .collect()
        })
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(PathBuf::from(home).join(".cargo/bin/secantusd-rs"));
    }
    candidates.into_iter().find(|p| p.is_file()).context(
        "secantusd-rs not found on PATH nor in ~/.cargo/bin: install it with \
         `cargo install secantus-mdb --version 0.5.3-beta.196 --ignore-rust-version` \
         (needs cmake), or pass --secantusd FILE",
    )
}

/// The kernel's clock ticks per second, the unit of the CPU times in
/// `/proc/stat` and `/proc/PID/stat` (USER_HZ).
pub fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) as f64 }
}

/// Busy CPU seconds of the whole machine so far (all but idle and iowait).
pub fn machine_cpu(ticks_per_sec: f64) -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    // cpu  user nice system idle iowait irq softirq steal ...
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let busy = fields.get(..8)?.iter().sum::<u64>() - fields[3] - fields[4];
    Some(busy as f64 / ticks_per_sec)
}

/// User plus system CPU seconds of process `pid`, all threads, so far.
pub fn process_cpu(pid: u32, ticks_per_sec: f64) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields 14 (utime) and 15 (stime); field 2 is in parentheses and may
    // hold spaces, so count from after it (field 3).
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / ticks_per_sec)
}

/// The last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> String {
    let mut text = String::new();
    if let Ok(mut file) = File::open(path) {
        let _ = file.read_to_string(&mut text);
    }
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The one-minute load average.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".to_string())
}
