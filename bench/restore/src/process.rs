//! Processes: the SecantusDB server this harness restores into, stopped by
//! its process id on every path and tied to the harness with
//! `PR_SET_PDEATHSIG`; the measurement children and the CPU readings come
//! from `bench_support::process`, re-exported here.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
pub use bench_support::process::{
    die_with_parent, find_secantusd, load_average, machine_cpu, process_cpu, tail, ChildGuard,
    SERVER_PID, SERVER_STOP_TIMEOUT,
};

const SERVER_STARTUP_TIMEOUT: Duration = Duration::from_secs(180);

/// The SecantusDB server.
pub struct Server {
    child: ChildGuard,
    addr: SocketAddr,
}

impl Server {
    /// Starts `binary` on a free port of 127.0.0.1 with its data in `data`
    /// and reads the bound address from its first stdout line.
    pub fn start(
        binary: &Path,
        data: &Path,
        cwd: &Path,
        extra_args: &[String],
        log: &Path,
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
            .args(extra_args)
            // No stray ./secantusd.toml is picked up.
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file);
        die_with_parent(&mut command);
        let mut child = ChildGuard(Some(
            command
                .spawn()
                .with_context(|| format!("cannot start {}", binary.display()))?,
        ));
        let stdout = child
            .0
            .as_mut()
            .and_then(|c| c.stdout.take())
            .context("stdout is piped")?;
        let (tx, rx) = std_mpsc::channel();
        // First line: `secantusd-rs listening on 127.0.0.1:PORT`; then drain
        // stdout so the server never blocks on it.
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let first = reader.read_line(&mut line).map(|_| line);
            let _ = tx.send(first);
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let hint = if log == Path::new("/dev/null") {
            "; rerun with --server-log FILE to see its log".to_string()
        } else {
            format!("; see {}", log.display())
        };
        let line = match rx.recv_timeout(SERVER_STARTUP_TIMEOUT) {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => bail!("cannot read the server's stdout: {e}"),
            Err(_) => bail!(
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

    pub fn uri(&self) -> String {
        format!("mongodb://{}/?directConnection=true", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Stops the server; fails if it had exited on its own.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.terminate()
    }

    /// SIGTERM (a clean WiredTiger close); if it still runs after a
    /// minute, the guard kills it.
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
        eprintln!("bench-restore: the server ignored SIGTERM for a minute; killing it");
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.terminate();
    }
}
