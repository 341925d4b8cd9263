//! `mongobak serve`: build everything in order, serve, stop on a signal.
//!
//! Start-up: metadata store (migrations), accounts, configured instances,
//! blob folder, then the listener; the backup runner, the download
//! workers, the janitor, the scheduler, the oplog tailers and the restore
//! workers run beside the server, on one
//! task tracker that a stop waits for (`mongobak_worker::Runner`). The bound
//! address is printed on stdout as `mongobak listening on <url>` (so
//! `listen = "127.0.0.1:0"` is usable by scripts), preceded by
//! `mongobak admin listening on <url>` when `[server] admin_listen` is set;
//! logs go to stderr. SIGINT or SIGTERM cancels one token; the listeners
//! stop accepting and let in-flight requests finish.

use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use mongobak_api::{Api, UrlSigner};
use mongobak_catalog::Catalog;
use mongobak_catalog::RetryPolicy;
use mongobak_worker::{
    BackupRunner, DownloadRunner, DownloadRunnerConfig, Janitor, JanitorConfig, OplogBackup,
    OplogBackupConfig, RestoreRunner, RestoreRunnerConfig, Runner, Scheduler, SchedulerConfig,
};
use tokio_util::task::TaskTracker;

use crate::accounts;
use crate::config::Config;
use crate::instances;

/// Runs the server until SIGINT or SIGTERM.
pub async fn serve(mut config: Config) -> anyhow::Result<()> {
    crate::private::create_data_dir(&config.data_dir)?;
    let tightened = crate::private::tighten(&local_paths(&config))?;
    if tightened > 0 {
        tracing::info!(
            tightened,
            data_dir = %config.data_dir.display(),
            "files and folders others could read were restricted to their owner"
        );
    }
    // Lowered to what the open-file limit allows, with a warning, once.
    config.server.max_connections = Some(config.server.effective_max_connections());
    let catalog = Catalog::open(&config.metadata_url)
        .await
        .context("cannot open the metadata store")?;
    let (accounts, generated) = accounts::root_accounts(&config)?;
    let url_signing_key = accounts::url_signing_key(&config)?;
    if let Some(path) = &generated {
        tracing::info!(
            path = %path.display(),
            uin = %accounts[0].uin,
            "no [[accounts]] configured: the root account's keys are in this file (mode 0600); \
             `mongobak credentials` prints them as TENCENTCLOUD_* exports"
        );
    }
    instances::sync_config(&catalog, &config.instances, &accounts[0].uin).await?;
    let store = crate::config::open_store(&config).context("cannot open the blob storage")?;
    store
        .check()
        .await
        .context("the blob storage does not answer")?;
    let node = node_name();
    let backups = BackupRunner::new(catalog.clone(), store.clone(), config.backups.clone());
    let interrupted = backups
        .recover()
        .await
        .context("cannot recover interrupted backups")?;
    let janitor = Janitor::new(
        catalog.clone(),
        store.clone(),
        JanitorConfig {
            task_retention: config.downloads.task_retention,
            garbage_grace: config.gc_grace,
            node: node.clone(),
            ..JanitorConfig::default()
        },
    );
    let scheduler = Scheduler::new(
        catalog.clone(),
        store.clone(),
        SchedulerConfig {
            node: node.clone(),
            ..config.scheduler.clone()
        },
    );
    let oplog = config.pitr.clone().map(|pitr| {
        OplogBackup::new(
            catalog.clone(),
            store.clone(),
            OplogBackupConfig {
                node: node.clone(),
                ..pitr
            },
        )
    });
    let restores = RestoreRunner::new(
        catalog.clone(),
        store.clone(),
        RestoreRunnerConfig {
            node: node.clone(),
            ..RestoreRunnerConfig::default()
        },
    );
    let downloads = DownloadRunner::new(
        catalog.clone(),
        store.clone(),
        DownloadRunnerConfig {
            node,
            workers: config.downloads.workers,
            lease: config.downloads.lease,
            retry: RetryPolicy {
                max_attempts: config.downloads.max_attempts,
                ..DownloadRunnerConfig::default().retry
            },
            file_retention: config.downloads.file_retention,
            ..DownloadRunnerConfig::default()
        },
    );
    if interrupted > 0 {
        tracing::warn!(
            interrupted,
            "backups interrupted by the last stop were marked failed"
        );
    }

    let admin = match config.admin_listen {
        None => None,
        Some(address) => {
            let listener = std::net::TcpListener::bind(address)
                .with_context(|| format!("cannot listen on {address} ([server] admin_listen)"))?;
            let bound = listener.local_addr()?;
            if !bound.ip().is_loopback() {
                tracing::warn!(
                    address = %bound,
                    "the admin listener is on a non-loopback address: its /metrics names every instance; \
                     keep it behind a firewall"
                );
            }
            println!("mongobak admin listening on http://{bound}");
            Some(listener)
        }
    };
    let listener = std::net::TcpListener::bind(config.listen)
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let bound = listener.local_addr()?;
    if config.server.tls.is_none() && !bound.ip().is_loopback() {
        tracing::warn!(
            address = %bound,
            "listening on a non-loopback address without TLS: backups and keys cross the network in clear; \
             set [server] tls_cert_file and tls_key_file"
        );
    }
    let scheme = if config.server.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let public_url = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{bound}"));
    println!("mongobak listening on {scheme}://{bound}");
    tracing::info!(
        address = %bound,
        data_dir = %config.data_dir.display(),
        public_url = %public_url,
        max_connections = config.server.max_connections,
        "mongobak started"
    );

    let mut api_config = config.api;
    api_config.downloads.public_url = public_url.clone();
    api_config.downloads.signer = UrlSigner::new(url_signing_key).with_previous_keys(
        config
            .downloads
            .url_signing_previous_keys
            .iter()
            .map(|k| k.as_bytes().to_vec())
            .collect(),
    );
    let api = Arc::new(Api::new(api_config, &accounts, catalog, store));
    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    tasks.spawn(stop_on_signal(shutdown.clone()));
    let runner = Runner::new(tasks.clone(), shutdown.clone());
    backups.start(&runner);
    downloads.start(&runner);
    janitor.start(&runner);
    scheduler.start(&runner);
    if let Some(oplog) = oplog {
        oplog.start(&runner);
    }
    restores.start(&runner);
    let admin = admin.map(|listener| {
        tokio::spawn(mongobak_server::run_admin(
            listener,
            api.clone(),
            config.server.clone(),
            shutdown.clone(),
        ))
    });
    tasks.close();
    let served = mongobak_server::run(listener, api, config.server, shutdown.clone()).await;
    shutdown.cancel();
    tasks.wait().await;
    if let Some(admin) = admin {
        admin.await.context("the admin listener failed")??;
    }
    served?;
    tracing::info!("mongobak stopped");
    Ok(())
}

/// Where this server keeps files on this host: the data folder, and the
/// SQLite database and the storage folder when they lie elsewhere.
fn local_paths(config: &Config) -> Vec<std::path::PathBuf> {
    use std::path::PathBuf;
    let mut paths = vec![config.data_dir.clone()];
    let sqlite = config
        .metadata_url
        .strip_prefix("sqlite://")
        .or_else(|| config.metadata_url.strip_prefix("sqlite:"));
    if let Some(file) = sqlite.map(|rest| rest.split('?').next().unwrap_or(rest)) {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            paths.push(PathBuf::from(format!("{file}{suffix}")));
        }
    }
    if let Some(folder) = config.storage_url.strip_prefix("file://") {
        paths.push(PathBuf::from(folder));
        paths.push(PathBuf::from(format!("{folder}.tmp")));
    }
    paths.retain(|path| config.data_dir == *path || !path.starts_with(&config.data_dir));
    paths
}

/// This process's name in task leases: host, process id and start time, so
/// a restarted process never mistakes an old lease for its own.
fn node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!(
        "{}:{}:{}",
        host.trim(),
        std::process::id(),
        jiff::Timestamp::now().as_millisecond()
    )
}

async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(term), Ok(int)) => (term, int),
        _ => {
            tracing::error!("cannot install signal handlers; stop the server with SIGKILL");
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received: finishing in-flight requests"),
        _ = int.recv() => tracing::info!("SIGINT received: finishing in-flight requests"),
        _ = shutdown.cancelled() => return,
    }
    shutdown.cancel();
}
