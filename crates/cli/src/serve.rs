//! `mongobak serve`: build everything in order, serve, stop on a signal.
//!
//! Start-up: metadata store (migrations), accounts, configured instances,
//! blob folder, then the listener. The bound address is printed on stdout
//! as `mongobak listening on <url>` (so `listen = "127.0.0.1:0"` is usable
//! by scripts); logs go to stderr. SIGINT or SIGTERM cancels one token;
//! the server stops accepting and lets in-flight requests finish.

use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use mongobak_api::Api;
use mongobak_catalog::Catalog;

use crate::accounts;
use crate::config::Config;
use crate::instances;

/// Runs the server until SIGINT or SIGTERM.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let catalog = Catalog::open(&config.metadata_url)
        .await
        .context("cannot open the metadata store")?;
    let (accounts, generated) = accounts::root_accounts(&config)?;
    if let Some(path) = &generated {
        tracing::info!(
            path = %path.display(),
            uin = %accounts[0].uin,
            "no [[accounts]] configured: the root account's keys are in this file (mode 0600); \
             `mongobak credentials` prints them as TENCENTCLOUD_* exports"
        );
    }
    instances::sync_config(&catalog, &config.instances, &accounts[0].uin).await?;
    if let Some(path) = config.storage_url.strip_prefix("file://") {
        std::fs::create_dir_all(path)
            .with_context(|| format!("cannot create the blob folder {path}"))?;
    }

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
        "mongobak started"
    );

    let api = Arc::new(Api::new(config.api, &accounts, catalog));
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    mongobak_server::run(listener, api, config.server, shutdown).await?;
    tracing::info!("mongobak stopped");
    Ok(())
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
    }
    shutdown.cancel();
}
