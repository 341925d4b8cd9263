//! Progress on stderr, in one of three modes chosen once per command:
//!
//! * bars (indicatif) when stdout and stderr are both terminals;
//! * plain lines otherwise, one per item when it starts, every
//!   [`LINE_EVERY`] while it runs and when it ends, in a fixed shape a
//!   script can parse:
//!   `<verb> <item>: <done>/<total> bytes (<p>%), <rate>/s, eta <t>[, <note>]`
//!   or `<verb> <item>: <p>%[, <note>]`;
//! * nothing with `--quiet`.
//!
//! Results go to stdout, never mixed with progress (see [`crate::output`]).

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Pause between two plain progress lines of one item.
pub const LINE_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Bars,
    Lines,
    Quiet,
}

/// Where a command's progress goes.
#[derive(Clone)]
pub struct Progress {
    mode: Mode,
    multi: MultiProgress,
}

impl Progress {
    /// Bars on a terminal, lines elsewhere, nothing when `quiet`.
    pub fn new(quiet: bool) -> Progress {
        let mode = if quiet {
            Mode::Quiet
        } else if std::io::stdout().is_terminal() && std::io::stderr().is_terminal() {
            Mode::Bars
        } else {
            Mode::Lines
        };
        let multi = MultiProgress::with_draw_target(match mode {
            Mode::Bars => ProgressDrawTarget::stderr(),
            _ => ProgressDrawTarget::hidden(),
        });
        Progress { mode, multi }
    }

    /// A meter over `total` bytes: `verb` is what happens (`downloading`),
    /// `item` to what.
    pub fn bytes(&self, verb: &str, item: &str, total: u64) -> Meter {
        self.meter(
            Kind::Bytes,
            verb,
            item,
            total,
            "{spinner} {prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}",
        )
    }

    /// A meter of a percentage.
    pub fn percent(&self, verb: &str, item: &str) -> Meter {
        self.meter(
            Kind::Percent,
            verb,
            item,
            100,
            "{spinner} {prefix} [{bar:30}] {pos:>3}% {msg}",
        )
    }

    fn meter(&self, kind: Kind, verb: &str, item: &str, total: u64, template: &str) -> Meter {
        let bar = match self.mode {
            Mode::Bars => {
                let bar = self.multi.add(ProgressBar::new(total));
                bar.set_style(
                    ProgressStyle::with_template(template)
                        .expect("a valid template")
                        .progress_chars("=> "),
                );
                bar.set_prefix(format!("{verb} {item}"));
                bar.enable_steady_tick(Duration::from_millis(200));
                bar
            }
            _ => ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden()),
        };
        Meter {
            bar,
            kind,
            label: format!("{verb} {item}"),
            mode: self.mode,
            last_line: Arc::new(Mutex::new(None)),
        }
    }

    /// A message line: above the bars, or on its own; none when quiet.
    pub fn note(&self, text: &str) {
        match self.mode {
            Mode::Bars => {
                let _ = self.multi.println(text);
            }
            Mode::Lines => eprintln!("{text}"),
            Mode::Quiet => {}
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Bytes,
    Percent,
}

/// The progress of one item.
#[derive(Clone)]
pub struct Meter {
    bar: ProgressBar,
    kind: Kind,
    label: String,
    mode: Mode,
    /// When the last plain line was printed, at which position and with
    /// which note.
    last_line: Arc<Mutex<Option<(Instant, u64, String)>>>,
}

impl Meter {
    /// Moves to `position` (bytes, or percent).
    pub fn set_position(&self, position: u64) {
        self.bar.set_position(position);
        self.line(false);
    }

    /// Starts counting speed and time left afresh from the current
    /// position (after a resume, the bytes already there do not count).
    pub fn reset_eta(&self) {
        self.bar.reset_eta();
    }

    /// Sets the note shown beside the figures.
    pub fn set_message(&self, message: String) {
        self.bar.set_message(message);
    }

    /// The item is done: the last line, the bar left at its final state.
    pub fn finish(&self) {
        self.line(true);
        self.bar.finish();
    }

    /// The text of a plain line.
    fn render(&self) -> String {
        let position = self.bar.position();
        let mut text = match self.kind {
            Kind::Bytes => {
                let total = self.bar.length().unwrap_or(0);
                let percent = (position * 100).checked_div(total).unwrap_or(100);
                format!(
                    "{}: {position}/{total} bytes ({percent}%), {}/s, eta {}s",
                    self.label,
                    HumanBytes(self.bar.per_sec() as u64),
                    self.bar.eta().as_secs()
                )
            }
            Kind::Percent => format!("{}: {position}%", self.label),
        };
        let message = self.bar.message();
        if !message.is_empty() {
            text.push_str(", ");
            text.push_str(&message);
        }
        text
    }

    fn line(&self, now: bool) {
        if self.mode != Mode::Lines {
            return;
        }
        let mut last = self.last_line.lock().unwrap_or_else(|e| e.into_inner());
        let (position, message) = (self.bar.position(), self.bar.message());
        let due = match &*last {
            None => true,
            // The closing line only when it has news.
            Some((_, at, said)) if now => (*at, said) != (position, &message),
            Some((when, _, _)) => when.elapsed() >= LINE_EVERY,
        };
        if due {
            eprintln!("{}", self.render());
            *last = Some((Instant::now(), position, message));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meter(kind: Kind, total: u64) -> Meter {
        Meter {
            bar: ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden()),
            kind,
            label: "downloading cmgo-abcd1234_0".into(),
            mode: Mode::Lines,
            last_line: Arc::new(Mutex::new(None)),
        }
    }

    #[test]
    fn plain_lines_have_a_fixed_shape() {
        let m = meter(Kind::Bytes, 2048);
        m.set_position(512);
        let line = m.render();
        assert!(
            line.starts_with("downloading cmgo-abcd1234_0: 512/2048 bytes (25%), "),
            "{line}"
        );
        assert!(line.contains("/s, eta "), "{line}");
        let p = meter(Kind::Percent, 100);
        p.set_position(40);
        p.set_message("retrying: storage".into());
        assert_eq!(
            p.render(),
            "downloading cmgo-abcd1234_0: 40%, retrying: storage"
        );
        assert!(meter(Kind::Bytes, 0)
            .render()
            .contains(" 0/0 bytes (100%), "));
    }
}
