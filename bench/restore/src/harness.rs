//! The parent side of a measurement: runs this binary again as a child
//! with `--child OP`, reaps it with `wait4` (its own CPU time and
//! `ru_maxrss`), samples the server's and the machine's CPU time around
//! it, and reads the child's JSON report.

use std::fs::OpenOptions;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::ValueEnum;

use crate::child::ChildReport;
use crate::Op;
use bench_support::process::{die_with_parent, machine_cpu, process_cpu, tail, ChildGuard};

/// Cores used by other processes (or the idle server), on average, above
/// which the machine is not idle.
pub const IDLE_CORES: f64 = 0.1;

/// What a row measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Writing the archive (not a measurement).
    Archive,
    /// `restore_archive` of the gzipped archive.
    RestoreGz,
    /// `restore_archive` of the plain archive.
    RestorePlain,
    /// The plain batched `insert_many`.
    Baseline,
    /// The same, reading the archive meanwhile.
    BaselineStreamed,
    /// The restore's reading side alone, gzipped archive.
    ReadGz,
    /// The same, plain archive.
    ReadPlain,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Archive => "archive",
            Kind::RestoreGz => "restore gz",
            Kind::RestorePlain => "restore plain",
            Kind::Baseline => "baseline",
            Kind::BaselineStreamed => "baseline streamed",
            Kind::ReadGz => "read gz (no server)",
            Kind::ReadPlain => "read plain (no server)",
        }
    }
}

/// One child run, as the parent saw it.
pub struct Measured {
    pub label: String,
    /// The round it belongs to (0: none).
    pub round: usize,
    pub kind: Kind,
    pub report: ChildReport,
    /// `ru_maxrss` from `wait4`, in kB.
    pub maxrss_kb: u64,
    /// The child's user + system CPU time.
    pub child_cpu: f64,
    /// The server's user + system CPU time over the child's life.
    pub server_cpu: Option<f64>,
    /// CPU time of every other process on the machine over the child's
    /// life: other work competing for the cores.
    pub other_cpu: Option<f64>,
}

impl Measured {
    pub fn mb_per_s(&self) -> f64 {
        self.report.bytes as f64 / 1e6 / self.report.seconds
    }
}

/// Everything the parent needs to run children.
pub struct Harness {
    pub this: PathBuf,
    /// The server's URI and process id, once it runs.
    pub server: Option<(String, u32)>,
    pub log: PathBuf,
    pub gb: f64,
    pub parallel: usize,
    pub idle_wait: Duration,
    pub timeout: Duration,
    pub ticks_per_sec: f64,
}

impl Harness {
    /// Waits up to `idle_wait` for a second in which other processes, and
    /// the server on its own, each use under [`IDLE_CORES`] cores (after a
    /// round's drop the server may still be writing).
    pub fn wait_for_idle(&self) {
        let server_pid = self.server.as_ref().map_or(0, |s| s.1);
        let sample = || {
            machine_cpu(self.ticks_per_sec)
                .map(|m| (m, process_cpu(server_pid, self.ticks_per_sec)))
        };
        let deadline = Instant::now() + self.idle_wait;
        while Instant::now() < deadline {
            let before = sample();
            std::thread::sleep(Duration::from_secs(1));
            let after = sample();
            let Some(((m0, s0), (m1, s1))) = before.zip(after) else {
                return;
            };
            let server = s0.zip(s1).map_or(0.0, |(a, b)| b - a);
            if (m1 - m0) - server < IDLE_CORES && server < IDLE_CORES {
                return;
            }
        }
    }

    /// Runs `--child op` on `archive` to completion and collects its report
    /// and usage. `inherit_stderr`: the child's stderr goes to the
    /// terminal instead of the log.
    pub fn run_child(
        &self,
        op: Op,
        archive: &Path,
        kind: Kind,
        label: &str,
        inherit_stderr: bool,
    ) -> anyhow::Result<Measured> {
        let mut command = Command::new(&self.this);
        command
            .arg("--child")
            .arg(
                op.to_possible_value()
                    .expect("no skipped variants")
                    .get_name(),
            )
            .arg("--archive")
            .arg(archive)
            .args(["--gb", &self.gb.to_string()])
            .args(["--parallel", &self.parallel.to_string()]);
        if let Some((uri, pid)) = &self.server {
            command.args(["--uri", uri, "--server-pid", &pid.to_string()]);
        }
        let stderr: Stdio = if inherit_stderr {
            Stdio::inherit()
        } else {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log)
                .with_context(|| format!("cannot open {}", self.log.display()))?
                .into()
        };
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        die_with_parent(&mut command);

        let server_pid = self.server.as_ref().map(|s| s.1);
        let server_cpu_now = || server_pid.and_then(|pid| process_cpu(pid, self.ticks_per_sec));
        let server_before = server_cpu_now();
        let machine_before = machine_cpu(self.ticks_per_sec);
        let mut child = ChildGuard(Some(
            command.spawn().context("cannot start a child process")?,
        ));
        let mut stdout = child
            .0
            .as_mut()
            .and_then(|c| c.stdout.take())
            .context("stdout is piped")?;
        let (tx, rx) = std_mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = tx.send(stdout.read_to_string(&mut text).map(|_| text));
        });
        let text = match rx.recv_timeout(self.timeout) {
            Ok(Ok(text)) => text,
            Ok(Err(e)) => bail!("{label}: cannot read the child's stdout: {e}"),
            Err(_) => bail!("{label}: still running after {} s", self.timeout.as_secs()),
        };
        let (status, usage) = child.wait_rusage()?;
        let server_after = server_cpu_now();
        let machine_after = machine_cpu(self.ticks_per_sec);
        if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
            let log = if inherit_stderr {
                String::new()
            } else {
                format!("; its log:\n{}", tail(&self.log, 30))
            };
            bail!("{label}: the child failed (wait status {status:#x}){log}");
        }
        let line = text.lines().last().unwrap_or_default();
        let report: ChildReport = serde_json::from_str(line)
            .with_context(|| format!("{label}: the child printed {line:?}"))?;
        let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        let whole_child_cpu = seconds(usage.ru_utime) + seconds(usage.ru_stime);
        // The child's own readings cover its timed part only; the parent's
        // cover its whole life (a baseline's loading included).
        let (child_cpu, server_cpu, machine_cpu) = match report.cpu {
            Some(cpu) => (cpu.own, cpu.server, cpu.machine),
            None => (
                whole_child_cpu,
                match server_pid {
                    Some(_) => server_before.zip(server_after).map(|(a, b)| b - a),
                    None => Some(0.0),
                },
                machine_before.zip(machine_after).map(|(a, b)| b - a),
            ),
        };
        let other_cpu = machine_cpu
            .zip(server_cpu)
            .map(|(machine, server)| (machine - child_cpu - server).max(0.0));
        Ok(Measured {
            label: label.to_string(),
            round: 0,
            kind,
            report,
            maxrss_kb: usage.ru_maxrss as u64,
            child_cpu,
            server_cpu,
            other_cpu,
        })
    }
}
