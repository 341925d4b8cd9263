//! Prometheus metrics of the API: requests by action and outcome, latency.
//!
//! One recorder per process (the `metrics` facade is global), installed on
//! first use; every router of the process renders the same registry. No
//! series of the registry carries an instance ID or an account: those the
//! API listener's `/metrics` would show to anyone. The per-instance
//! storage series are computed from the catalog when the admin listener
//! is scraped ([`per_instance`]).

use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};
use std::time::Duration;

use metrics::{Counter, Histogram};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use mongobak_api::{Action, Api, CatalogError};

/// Buckets of the latency histogram, in seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Handle to the process's metrics registry.
#[derive(Clone)]
pub(crate) struct Metrics {
    handle: PrometheusHandle,
}

impl Metrics {
    /// The process-wide registry, installed on first call.
    pub(crate) fn get() -> Self {
        static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
        let handle = HANDLE.get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("mongobak_api_request_duration_seconds".into()),
                    LATENCY_BUCKETS,
                )
                .expect("the bucket list is not empty")
                .install_recorder()
                .expect("no other metrics recorder is installed in this process")
        });
        Metrics {
            handle: handle.clone(),
        }
    }

    /// Counts one API request. Unknown action names are counted as `other`
    /// so that arbitrary input cannot grow the label set.
    pub(crate) fn record(&self, action: &str, code: &'static str, elapsed: Duration) {
        let action = Action::ALL
            .iter()
            .find(|a| a.name() == action)
            .map_or("other", |a| a.name());
        let (requests, latency) = self.series(action, code);
        requests.increment(1);
        latency.record(elapsed.as_secs_f64());
    }

    /// The request counter and latency histogram of `action` and `code`,
    /// registered once: a lookup in the registry builds its key anew each
    /// time, which cost more than the counting.
    fn series(&self, action: &'static str, code: &'static str) -> (Counter, Histogram) {
        type Series = HashMap<(&'static str, &'static str), (Counter, Histogram)>;
        static SERIES: OnceLock<RwLock<Series>> = OnceLock::new();
        let series = SERIES.get_or_init(Default::default);
        if let Some(found) = series
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(action, code))
        {
            return found.clone();
        }
        series
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry((action, code))
            .or_insert_with(|| {
                (
                    metrics::counter!("mongobak_api_requests_total", "action" => action, "code" => code),
                    metrics::histogram!("mongobak_api_request_duration_seconds", "action" => action),
                )
            })
            .clone()
    }

    /// The Prometheus text exposition.
    pub(crate) fn render(&self) -> String {
        self.handle.render()
    }
}

/// The stored bytes of each registered instance's backups, and of their
/// oplog slices, as Prometheus text: `mongobak_backup_stored_bytes{instance}`
/// and `mongobak_backup_oplog_bytes{instance}` (0 for an instance without
/// backups); and the lag of continuous oplog backup,
/// `mongobak_oplog_lag_seconds{replica_set}`.
pub(crate) async fn per_instance(api: &Api) -> Result<String, CatalogError> {
    use std::fmt::Write;
    let sizes = api.stored_bytes_per_instance().await?;
    let mut text = String::new();
    for (name, help, pick) in [
        (
            "mongobak_backup_stored_bytes",
            "Stored bytes of the instance's backups.",
            (|s: &(String, u64, u64)| s.1) as fn(&(String, u64, u64)) -> u64,
        ),
        (
            "mongobak_backup_oplog_bytes",
            "Stored bytes of the oplog slices of the instance's backups.",
            |s: &(String, u64, u64)| s.2,
        ),
    ] {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} gauge");
        for size in &sizes {
            let _ = writeln!(
                text,
                "{name}{{instance=\"{}\"}} {}",
                label_value(&size.0),
                pick(size)
            );
        }
    }
    // How old the newest restorable point of each replica set is: the
    // tailer's lag (a source writes a no-op every few seconds when idle,
    // so an idle source shows that period at most).
    let positions = api.oplog_positions().await?;
    let now = jiff::Timestamp::now();
    let name = "mongobak_oplog_lag_seconds";
    let _ = writeln!(
        text,
        "# HELP {name} Seconds since the oplog entry at the saved position of continuous oplog backup was written.\n# TYPE {name} gauge"
    );
    for position in &positions {
        let lag = now
            .duration_since(position.sealed_wall)
            .as_secs_f64()
            .max(0.0);
        let _ = writeln!(
            text,
            "{name}{{replica_set=\"{}\"}} {lag:.3}",
            label_value(&position.replica_set_id)
        );
    }
    Ok(text)
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn label_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
