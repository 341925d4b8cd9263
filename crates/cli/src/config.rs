//! Configuration: the TOML file of the README's "Configuration", every key
//! optional, with `MONGOBAK_<SECTION>_<KEY>` environment overrides.
//!
//! Two stages, as in ripgrep's flags: [`ConfigFile`] is what the user wrote
//! (all `Option`, unknown keys refused so typos surface), and [`Config`] is
//! validated, with defaults filled in and paths resolved. Libraries get their
//! own small config structs from [`Config`]; none of them reads files or
//! the environment.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use figment::providers::{Env, Format, Toml};
use figment::Figment;
use jiff::tz::TimeZone;
use serde::Deserialize;

use mongobak_api::{
    ApiConfig, DownloadSettings, Policy, RateLimits, RootAccount, SubAccount, DEFAULT_REGIONS,
};
use mongobak_blob::{StorageCredentials, StorageOptions};
use mongobak_dump::{Compression, DumpOptions};
use mongobak_server::{ServerConfig, TlsFiles};
use mongobak_worker::{BackupRunnerConfig, Notifier, OplogBackupConfig, SchedulerConfig};

/// Sections whose scalar keys the environment may override.
const ENV_SECTIONS: &[&str] = &[
    "server",
    "metadata",
    "storage",
    "rate_limits",
    "backups",
    "downloads",
    "pitr",
];

/// The configuration file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// `[server]`.
    #[serde(default)]
    pub server: ServerSection,
    /// `[metadata]`.
    #[serde(default)]
    pub metadata: UrlSection,
    /// `[storage]`.
    #[serde(default)]
    pub storage: StorageSection,
    /// `[rate_limits]`.
    #[serde(default)]
    pub rate_limits: RateLimitSection,
    /// `[backups]`.
    #[serde(default)]
    pub backups: BackupSection,
    /// `[downloads]`.
    #[serde(default)]
    pub downloads: DownloadSection,
    /// `[pitr]`.
    #[serde(default)]
    pub pitr: PitrSection,
    /// `[[accounts]]`.
    #[serde(default)]
    pub accounts: Vec<AccountEntry>,
    /// `[[instances]]`.
    #[serde(default)]
    pub instances: Vec<InstanceEntry>,
}

/// `[storage]`: where backups and download files live.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    /// `file://PATH`, `s3://BUCKET/PREFIX?endpoint=...&region=...` or
    /// `cos://BUCKET-APPID/PREFIX?region=...`.
    pub url: Option<String>,
    /// Object store key id; without one, the store's usual environment
    /// variables (`AWS_ACCESS_KEY_ID`, ...) and profiles apply.
    pub access_key_id: Option<String>,
    /// Object store secret key.
    pub secret_access_key: Option<String>,
    /// Object store session token, for temporary keys.
    pub session_token: Option<String>,
    /// Seconds one storage request may take before it counts as failed
    /// (default 60).
    pub timeout_secs: Option<u64>,
    /// Retries of a failed storage request, with backoff, before the
    /// failure is reported (default 4).
    pub max_retries: Option<usize>,
}

impl std::fmt::Debug for StorageSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageSection")
            .field("url", &self.url)
            .field("access_key_id", &self.access_key_id)
            .field("timeout_secs", &self.timeout_secs)
            .field("max_retries", &self.max_retries)
            .finish_non_exhaustive()
    }
}

/// `[server]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Address of the API and download endpoint (default 127.0.0.1:9000).
    pub listen: Option<String>,
    /// Base of the download URLs handed out (default from `listen`).
    pub public_url: Option<String>,
    /// Where the SQLite file, local blobs and generated keys live
    /// (default `./mongobak-data`).
    pub data_dir: Option<PathBuf>,
    /// Zone of API time strings, backup names and schedules
    /// (default Asia/Shanghai).
    pub timezone: Option<String>,
    /// Serve HTTPS with this PEM certificate chain...
    pub tls_cert_file: Option<PathBuf>,
    /// ...and this PEM private key.
    pub tls_key_file: Option<PathBuf>,
    /// Largest request body in bytes (default 10 MiB).
    pub max_body_bytes: Option<usize>,
    /// Regions served (default: the public Tencent Cloud regions).
    pub regions: Option<Vec<String>>,
    /// Seconds in-flight requests get to finish at shutdown (default 30).
    pub shutdown_grace_secs: Option<u64>,
    /// URL that failed automatic backups are POSTed to as JSON (when the
    /// instance's rule has `Notify` on).
    pub notify_webhook: Option<String>,
    /// Seconds a request head (and a TLS handshake) may take to arrive
    /// whole (default 10).
    pub header_read_timeout_secs: Option<u64>,
    /// Seconds a connection may stay without a request being handled and
    /// without a byte moving before it is closed (default 30).
    pub idle_timeout_secs: Option<u64>,
    /// Open connections at most (default 1024; never more than the
    /// open-file limit leaves room for).
    pub max_connections: Option<usize>,
    /// Address of the admin listener, serving `/metrics` with the
    /// per-instance series (default: none).
    pub admin_listen: Option<String>,
    /// `/readyz` answers 503 when the data folder's file system has less
    /// free space than this many MiB (default 1024; 0: no check).
    pub min_free_disk_mib: Option<u64>,
    /// Serve the web console at `/console/` (default true).
    pub console: Option<bool>,
}

/// `[metadata]` and `[storage]`: one URL each.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UrlSection {
    /// `sqlite://PATH` or `postgres://...`.
    pub url: Option<String>,
}

/// `[rate_limits]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSection {
    /// Requests per second per account for every action (default 20).
    pub default: Option<u32>,
    /// Requests per second per account for named actions.
    #[serde(default)]
    pub actions: BTreeMap<String, u32>,
}

/// `[backups]`: how backups are taken.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupSection {
    /// Backups taken at once, of different instances (default 2).
    pub concurrency: Option<usize>,
    /// Collections dumped at once within one replica set (default 4).
    pub collection_concurrency: Option<usize>,
    /// Uncompressed MiB per stored segment (default 256).
    pub segment_mib: Option<u64>,
    /// How segments are stored: "zstd" (default) or "none".
    pub compression: Option<CompressionName>,
    /// zstd level of stored segments: 1 to 19, or zstd's fast levels -1 to
    /// -7 (default 1).
    pub zstd_level: Option<i32>,
    /// Days a backup is kept when neither its request nor a backup rule
    /// names a retention (default 7).
    pub default_retention_days: Option<i64>,
    /// Take automatic backups by each instance's backup rule (default
    /// true); expired backups are deleted either way.
    pub automatic: Option<bool>,
    /// Hours stored data no catalog entry accounts for is left alone
    /// before garbage collection deletes it (default 24).
    pub gc_grace_hours: Option<i64>,
    /// Tries of a backup whose failure may pass, such as the server being
    /// unreachable (default 3).
    pub attempts: Option<u32>,
    /// Seconds before the second try, doubling before each next one
    /// (default 30).
    pub retry_delay_secs: Option<u64>,
}

/// `[pitr]`: continuous oplog backup, for point-in-time recovery.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PitrSection {
    /// Follow every instance's oplog (default true).
    pub enabled: Option<bool>,
    /// Seconds a stretch of oplog may wait before it is sealed while
    /// writes keep coming (default 2).
    pub seal_interval_secs: Option<u64>,
    /// Uncompressed MiB at which a stretch is sealed at once (default 16).
    pub max_slice_mib: Option<u64>,
}

/// `[backups] compression`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CompressionName {
    /// zstd at `zstd_level`.
    Zstd,
    /// BSON as the server returned it.
    None,
}

/// `[downloads]`: backup download tasks and their files.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownloadSection {
    /// Tasks packaged at once on this node (default 2).
    pub workers: Option<usize>,
    /// Hours a download URL handed out stays valid (default 24).
    pub url_ttl_hours: Option<i64>,
    /// Days a packaged file is kept (default 7).
    pub file_retention_days: Option<i64>,
    /// Tries of a task before it fails (default 5).
    pub max_attempts: Option<i64>,
    /// Seconds a worker's claim on a task lasts without a heartbeat
    /// (default 30).
    pub lease_secs: Option<u64>,
    /// Secret that signs download URLs (at least 32 characters); nodes
    /// sharing storage must share it. Default: generated in the data dir.
    pub url_signing_key: Option<String>,
    /// Keys used before a rotation: URLs they signed stay valid for their
    /// lifetime.
    #[serde(default)]
    pub url_signing_previous_keys: Vec<String>,
    /// The `Bucket` shown with each task (default "mongobak").
    pub bucket: Option<String>,
    /// Hand out URLs presigned by the object store (S3, COS) when users can
    /// reach the store; else the nodes' own `/download/...` URLs (default
    /// false).
    pub presigned_urls: Option<bool>,
    /// Days finished tasks stay listed (default 30).
    pub task_retention_days: Option<i64>,
}

/// Validated `[downloads]` settings.
#[derive(Debug, Clone)]
pub struct Downloads {
    /// Tasks packaged at once.
    pub workers: usize,
    /// Validity of a URL.
    pub url_ttl: jiff::SignedDuration,
    /// Life of a packaged file.
    pub file_retention: jiff::SignedDuration,
    /// Tries of a task.
    pub max_attempts: i64,
    /// Lease of a claim.
    pub lease: std::time::Duration,
    /// Configured URL signing key.
    pub url_signing_key: Option<String>,
    /// Keys of before a rotation.
    pub url_signing_previous_keys: Vec<String>,
    /// The `Bucket` field.
    pub bucket: String,
    /// How long finished tasks stay listed.
    pub task_retention: jiff::SignedDuration,
    /// Presigned object store URLs.
    pub presigned_urls: bool,
}

/// `[[accounts]]`: a root account.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountEntry {
    /// AppId; without one, calls signed by this account fail the AppId check.
    pub app_id: Option<u64>,
    /// Uin of the account.
    pub uin: String,
    /// API key id.
    pub secret_id: String,
    /// API key secret.
    pub secret_key: String,
    /// Disable the account (its key stops working; its sub-accounts fail
    /// the AppId check).
    #[serde(default)]
    pub disabled: bool,
    /// `[[accounts.sub_users]]`.
    #[serde(default)]
    pub sub_users: Vec<SubUserEntry>,
}

/// `[[accounts.sub_users]]`: a sub-account with a policy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubUserEntry {
    /// Uin of the sub-account.
    pub uin: String,
    /// API key id.
    pub secret_id: String,
    /// API key secret.
    pub secret_key: String,
    /// Allowed actions (`mongodb:Describe*`).
    #[serde(default)]
    pub allow: Vec<String>,
    /// Allowed resources (`qcs::mongodb:<region>:uin/<uin>:instance/<id>`);
    /// default every resource.
    pub resources: Option<Vec<String>>,
    /// Disable the sub-account's key.
    #[serde(default)]
    pub disabled: bool,
}

/// `[[instances]]`: a deployment to back up.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceEntry {
    /// `cmgo-` + 8 `[a-z0-9]`; derived from owner and name when absent.
    pub id: Option<String>,
    /// Display name (default: the ID).
    pub name: Option<String>,
    /// Region (default ap-guangzhou).
    pub region: Option<String>,
    /// Owner's root Uin (default: the first root account).
    pub owner_uin: Option<String>,
    /// One URI per replica set / shard, in order.
    pub replica_sets: Vec<String>,
    /// A mongos URI, for a sharded cluster.
    pub mongos: Option<String>,
    /// Force the cluster type (default: sharded when there is more than one
    /// URI or a mongos).
    pub sharded: Option<bool>,
}

/// The validated configuration.
#[derive(Debug)]
pub struct Config {
    /// Address to bind.
    pub listen: SocketAddr,
    /// Address of the admin listener, when there is one.
    pub admin_listen: Option<SocketAddr>,
    /// Base of download URLs; `None` means the address actually bound
    /// (which differs from `listen` when it asks for port 0).
    pub public_url: Option<String>,
    /// Data folder.
    pub data_dir: PathBuf,
    /// Metadata store URL.
    pub metadata_url: String,
    /// Blob storage URL.
    pub storage_url: String,
    /// Keys (otherwise the environment's), timeouts and retries of the
    /// storage.
    pub storage: StorageOptions,
    /// Root accounts from the file (empty: use the generated one).
    pub accounts: Vec<RootAccount>,
    /// Instances from the file.
    pub instances: Vec<InstanceEntry>,
    /// Settings of the API layer.
    pub api: ApiConfig,
    /// Settings of the HTTP server.
    pub server: ServerConfig,
    /// Settings of the backup runner.
    pub backups: BackupRunnerConfig,
    /// Settings of download tasks.
    pub downloads: Downloads,
    /// Settings of the scheduler (automatic backups, expiry).
    pub scheduler: SchedulerConfig,
    /// Age of unaccounted stored data before garbage collection deletes it.
    pub gc_grace: jiff::SignedDuration,
    /// Settings of continuous oplog backup; `None` when it is off.
    pub pitr: Option<OplogBackupConfig>,
}

impl Config {
    /// Reads `path` (when given), applies the environment, validates.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        let mut figment = Figment::new();
        if let Some(path) = path {
            if !path.exists() {
                bail!("the configuration file {} does not exist", path.display());
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment.merge(Env::prefixed("MONGOBAK_").filter_map(|key| {
            let key = key.as_str().to_ascii_lowercase();
            ENV_SECTIONS.iter().find_map(|section| {
                key.strip_prefix(section)
                    .and_then(|rest| rest.strip_prefix('_'))
                    .filter(|rest| !rest.is_empty())
                    .map(|rest| format!("{section}.{rest}").into())
            })
        }));
        if let Some(path) = path {
            if let Some(secrets) = crate::private::exposed_secrets(path)? {
                tracing::warn!(
                    path = %path.display(),
                    secrets = %secrets.join(", "),
                    "the configuration file holds secrets and others may read it; run chmod 600 on it"
                );
            }
        }
        let file: ConfigFile = figment.extract().with_context(|| match path {
            Some(p) => format!(
                "invalid configuration in {} or MONGOBAK_* variables",
                p.display()
            ),
            None => "invalid MONGOBAK_* environment variables".to_string(),
        })?;
        Config::validate(file)
    }

    fn validate(file: ConfigFile) -> anyhow::Result<Config> {
        let server = file.server;
        let listen_text = server.listen.as_deref().unwrap_or("127.0.0.1:9000");
        let listen: SocketAddr = listen_text.parse().with_context(|| {
            format!("[server] listen = {listen_text:?} is not an address like 127.0.0.1:9000")
        })?;
        let admin_listen = match server.admin_listen.as_deref() {
            None | Some("") => None,
            Some(text) => Some(text.parse::<SocketAddr>().with_context(|| {
                format!("[server] admin_listen = {text:?} is not an address like 127.0.0.1:9100")
            })?),
        };
        let header_read_timeout_secs = server.header_read_timeout_secs.unwrap_or(10);
        if !(1..=300).contains(&header_read_timeout_secs) {
            bail!(
                "[server] header_read_timeout_secs = {header_read_timeout_secs}: expected 1 to 300"
            );
        }
        let idle_timeout_secs = server.idle_timeout_secs.unwrap_or(30);
        if !(1..=3600).contains(&idle_timeout_secs) {
            bail!("[server] idle_timeout_secs = {idle_timeout_secs}: expected 1 to 3600");
        }
        if server.max_connections == Some(0) {
            bail!("[server] max_connections must be at least 1");
        }
        let min_free_disk_mib = server.min_free_disk_mib.unwrap_or(1024);
        let tls = match (server.tls_cert_file, server.tls_key_file) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            _ => bail!("[server] tls_cert_file and tls_key_file must be given together"),
        };
        let public_url = server.public_url;
        if let Some(url) = &public_url {
            let scheme_ok = if tls.is_some() {
                url.starts_with("https://")
            } else {
                url.starts_with("http://") || url.starts_with("https://")
            };
            if !scheme_ok {
                bail!("[server] public_url = {url:?} must start with https:// (or http:// without TLS)");
            }
        }
        let data_dir = server
            .data_dir
            .unwrap_or_else(|| PathBuf::from("./mongobak-data"));
        let timezone_name = server.timezone.as_deref().unwrap_or("Asia/Shanghai");
        let timezone = TimeZone::get(timezone_name).with_context(|| {
            format!("[server] timezone = {timezone_name:?} is not an IANA time zone")
        })?;
        let metadata_url = file
            .metadata
            .url
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("meta.db").display()));
        if !["sqlite:", "postgres://", "postgresql://"]
            .iter()
            .any(|scheme| metadata_url.starts_with(scheme))
        {
            bail!("[metadata] url: expected sqlite://PATH or postgres://USER@HOST/DATABASE");
        }
        let storage_url = file
            .storage
            .url
            .unwrap_or_else(|| format!("file://{}", data_dir.join("blobs").display()));
        if !["file://", "s3://", "cos://"]
            .iter()
            .any(|scheme| storage_url.starts_with(scheme))
        {
            bail!("[storage] url: expected file://PATH, s3://BUCKET/PREFIX?... or cos://BUCKET-APPID/PREFIX?...");
        }
        let storage_credentials = match (file.storage.access_key_id, file.storage.secret_access_key)
        {
            (Some(access_key_id), Some(secret_access_key)) => Some(StorageCredentials {
                access_key_id,
                secret_access_key,
                session_token: file.storage.session_token,
            }),
            (None, None) => None,
            _ => bail!("[storage] access_key_id and secret_access_key go together"),
        };
        let defaults = StorageOptions::default();
        let storage_timeout = match file.storage.timeout_secs {
            Some(0) => bail!("[storage] timeout_secs must be at least 1"),
            Some(secs) => std::time::Duration::from_secs(secs),
            None => defaults.operation_timeout,
        };
        let storage = StorageOptions {
            credentials: storage_credentials,
            max_retries: file.storage.max_retries.unwrap_or(defaults.max_retries),
            operation_timeout: storage_timeout,
            io_timeout: storage_timeout,
            ..defaults
        };
        let regions: BTreeSet<String> = match server.regions {
            Some(list) if list.is_empty() => {
                bail!("[server] regions must name at least one region")
            }
            Some(list) => list.into_iter().collect(),
            None => DEFAULT_REGIONS.iter().map(|r| r.to_string()).collect(),
        };
        let accounts = accounts(file.accounts)?;
        for (n, entry) in file.instances.iter().enumerate() {
            if entry.replica_sets.is_empty() {
                bail!("[[instances]] entry {n} has no replica_sets URI");
            }
            if let Some(region) = &entry.region {
                if !regions.contains(region) {
                    bail!("[[instances]] entry {n}: region {region:?} is not among the served [server] regions");
                }
            }
        }
        let automatic = file.backups.automatic.unwrap_or(true);
        let gc_grace_hours = file.backups.gc_grace_hours.unwrap_or(24);
        if !(1..=24 * 365).contains(&gc_grace_hours) {
            bail!("[backups] gc_grace_hours = {gc_grace_hours}: expected 1 to 8760");
        }
        if let Some(url) = &server.notify_webhook {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bail!("[server] notify_webhook = {url:?}: expected an http:// or https:// URL");
            }
        }
        let mut backups = backup_runner(file.backups)?;
        backups.notifier = Notifier::new(server.notify_webhook.clone());
        let scheduler = SchedulerConfig {
            timezone: timezone.clone(),
            default_retention_days: backups.default_retention_days,
            automatic,
            ..SchedulerConfig::default()
        };
        let downloads = downloads(file.downloads)?;
        let pitr = oplog_backup(file.pitr, &timezone, &backups.notifier)?;
        let rate_limits = RateLimits {
            default_per_second: file.rate_limits.default.unwrap_or(20),
            per_action: file.rate_limits.actions.into_iter().collect(),
        };
        Ok(Config {
            listen,
            admin_listen,
            public_url,
            data_dir: data_dir.clone(),
            metadata_url,
            storage_url,
            storage,
            accounts,
            instances: file.instances,
            api: ApiConfig {
                regions,
                rate_limits,
                max_clock_skew_secs: 300,
                timezone,
                // The public URL and the signing key are set at start,
                // once the listener is bound and the key loaded.
                downloads: DownloadSettings {
                    url_ttl: downloads.url_ttl,
                    bucket: downloads.bucket.clone(),
                    presigned: downloads.presigned_urls,
                    ..DownloadSettings::default()
                },
                default_retention_days: backups.default_retention_days,
                point_in_time: pitr.is_some(),
            },
            server: ServerConfig {
                max_body_bytes: server.max_body_bytes.unwrap_or(10 * 1024 * 1024),
                tls,
                shutdown_grace: std::time::Duration::from_secs(
                    server.shutdown_grace_secs.unwrap_or(30),
                ),
                header_read_timeout: std::time::Duration::from_secs(header_read_timeout_secs),
                idle_timeout: std::time::Duration::from_secs(idle_timeout_secs),
                max_connections: server.max_connections,
                data_dir: Some(data_dir.clone()),
                min_free_disk_bytes: min_free_disk_mib.saturating_mul(1 << 20),
                console: server.console.unwrap_or(true),
            },
            backups,
            downloads,
            scheduler,
            gc_grace: jiff::SignedDuration::from_hours(gc_grace_hours),
            pitr,
        })
    }
}

fn oplog_backup(
    section: PitrSection,
    timezone: &TimeZone,
    notifier: &Notifier,
) -> anyhow::Result<Option<OplogBackupConfig>> {
    if !section.enabled.unwrap_or(true) {
        return Ok(None);
    }
    let seal_interval_secs = section.seal_interval_secs.unwrap_or(2);
    if !(1..=600).contains(&seal_interval_secs) {
        bail!("[pitr] seal_interval_secs = {seal_interval_secs}: expected 1 to 600");
    }
    let max_slice_mib = section.max_slice_mib.unwrap_or(16);
    if !(1..=1024).contains(&max_slice_mib) {
        bail!("[pitr] max_slice_mib = {max_slice_mib}: expected 1 to 1024");
    }
    Ok(Some(OplogBackupConfig {
        seal_interval: std::time::Duration::from_secs(seal_interval_secs),
        max_slice_bytes: (max_slice_mib as usize) << 20,
        timezone: timezone.clone(),
        notifier: notifier.clone(),
        ..OplogBackupConfig::default()
    }))
}

/// Opens the configured blob storage.
pub fn open_store(config: &Config) -> Result<mongobak_blob::BlobStore, mongobak_blob::BlobError> {
    mongobak_blob::BlobStore::open_with(&config.storage_url, &config.storage)
}

fn downloads(section: DownloadSection) -> anyhow::Result<Downloads> {
    let url_ttl_hours = section.url_ttl_hours.unwrap_or(24);
    if !(1..=24 * 30).contains(&url_ttl_hours) {
        bail!("[downloads] url_ttl_hours = {url_ttl_hours}: expected 1 to 720");
    }
    let retention_days = section.file_retention_days.unwrap_or(7);
    if !(1..=365).contains(&retention_days) {
        bail!("[downloads] file_retention_days = {retention_days}: expected 1 to 365");
    }
    let max_attempts = section.max_attempts.unwrap_or(5);
    if !(1..=100).contains(&max_attempts) {
        bail!("[downloads] max_attempts = {max_attempts}: expected 1 to 100");
    }
    let lease_secs = section.lease_secs.unwrap_or(30);
    if !(5..=3600).contains(&lease_secs) {
        bail!("[downloads] lease_secs = {lease_secs}: expected 5 to 3600");
    }
    for key in section
        .url_signing_key
        .iter()
        .chain(&section.url_signing_previous_keys)
    {
        if key.len() < 32 {
            bail!("[downloads] URL signing keys must be at least 32 characters");
        }
    }
    let task_days = section.task_retention_days.unwrap_or(30);
    if !(1..=3650).contains(&task_days) {
        bail!("[downloads] task_retention_days = {task_days}: expected 1 to 3650");
    }
    Ok(Downloads {
        workers: section.workers.unwrap_or(2).max(1),
        url_ttl: jiff::SignedDuration::from_hours(url_ttl_hours),
        file_retention: jiff::SignedDuration::from_hours(24 * retention_days),
        max_attempts,
        lease: std::time::Duration::from_secs(lease_secs),
        url_signing_key: section.url_signing_key,
        url_signing_previous_keys: section.url_signing_previous_keys,
        bucket: section.bucket.unwrap_or_else(|| "mongobak".into()),
        task_retention: jiff::SignedDuration::from_hours(24 * task_days),
        presigned_urls: section.presigned_urls.unwrap_or(false),
    })
}

fn backup_runner(section: BackupSection) -> anyhow::Result<BackupRunnerConfig> {
    let defaults = BackupRunnerConfig::default();
    let compression = match (section.compression, section.zstd_level) {
        (Some(CompressionName::None), Some(_)) => {
            bail!("[backups] zstd_level applies only to compression = \"zstd\"")
        }
        (Some(CompressionName::None), None) => Compression::None,
        (_, None) => defaults.dump.compression,
        (_, Some(level)) if level == 0 || !Compression::ZSTD_LEVELS.contains(&level) => {
            bail!("[backups] zstd_level = {level}: expected 1 to 19, or -1 to -7 for zstd's fast levels")
        }
        (_, Some(level)) => Compression::Zstd(level),
    };
    let retention = section
        .default_retention_days
        .unwrap_or(defaults.default_retention_days);
    if !(1..=7300).contains(&retention) {
        bail!("[backups] default_retention_days = {retention}: expected 1 to 7300");
    }
    let segment_mib = section
        .segment_mib
        .unwrap_or(defaults.dump.segment_bytes >> 20);
    if segment_mib == 0 {
        bail!("[backups] segment_mib must be at least 1");
    }
    let attempts = section.attempts.unwrap_or(defaults.attempts);
    if !(1..=10).contains(&attempts) {
        bail!("[backups] attempts = {attempts}: expected 1 to 10");
    }
    let retry_delay_secs = section
        .retry_delay_secs
        .unwrap_or(defaults.retry_delay.as_secs());
    if !(1..=3600).contains(&retry_delay_secs) {
        bail!("[backups] retry_delay_secs = {retry_delay_secs}: expected 1 to 3600");
    }
    Ok(BackupRunnerConfig {
        concurrency: section.concurrency.unwrap_or(defaults.concurrency).max(1),
        default_retention_days: retention,
        dump: DumpOptions {
            collection_concurrency: section
                .collection_concurrency
                .unwrap_or(defaults.dump.collection_concurrency)
                .max(1),
            segment_bytes: segment_mib << 20,
            compression,
            ..defaults.dump
        },
        attempts,
        retry_delay: std::time::Duration::from_secs(retry_delay_secs),
        ..defaults
    })
}

fn accounts(entries: Vec<AccountEntry>) -> anyhow::Result<Vec<RootAccount>> {
    let mut seen = BTreeSet::new();
    let mut accounts = Vec::with_capacity(entries.len());
    for entry in entries {
        let mut sub_accounts = Vec::with_capacity(entry.sub_users.len());
        for sub in entry.sub_users {
            if !seen.insert(sub.secret_id.clone()) {
                bail!("the SecretId of sub-account {} is used twice", sub.uin);
            }
            sub_accounts.push(SubAccount {
                uin: sub.uin,
                secret_id: sub.secret_id,
                secret_key: sub.secret_key,
                disabled: sub.disabled,
                policy: Policy {
                    allow: sub.allow,
                    resources: sub.resources.unwrap_or_else(|| vec!["*".to_string()]),
                },
            });
        }
        if !seen.insert(entry.secret_id.clone()) {
            bail!("the SecretId of account {} is used twice", entry.uin);
        }
        accounts.push(RootAccount {
            app_id: entry.app_id,
            uin: entry.uin,
            secret_id: entry.secret_id,
            secret_key: entry.secret_key,
            disabled: entry.disabled,
            sub_accounts,
        });
    }
    Ok(accounts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml: &str) -> anyhow::Result<Config> {
        let file: ConfigFile = Figment::new().merge(Toml::string(toml)).extract()?;
        Config::validate(file)
    }

    #[test]
    fn defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(c.public_url, None);
        assert_eq!(c.metadata_url, "sqlite://./mongobak-data/meta.db");
        assert_eq!(c.storage_url, "file://./mongobak-data/blobs");
        assert_eq!(c.server.max_body_bytes, 10 * 1024 * 1024);
        assert_eq!(c.server.header_read_timeout.as_secs(), 10);
        assert_eq!(c.server.idle_timeout.as_secs(), 30);
        assert_eq!(c.server.max_connections, None);
        assert_eq!(c.server.min_free_disk_bytes, 1024 << 20);
        assert_eq!(c.admin_listen, None);
        assert_eq!(c.api.rate_limits.default_per_second, 20);
        assert!(c.api.regions.contains("ap-guangzhou"));
        assert!(c.accounts.is_empty());
    }

    #[test]
    fn full_file() {
        let c = parse(
            r#"
            [server]
            listen = "0.0.0.0:9443"
            data_dir = "/var/lib/mongobak"
            timezone = "UTC"
            tls_cert_file = "c.pem"
            tls_key_file = "k.pem"
            [rate_limits]
            default = 5
            actions = { DescribeDBInstances = 50 }
            [[accounts]]
            app_id = 1250000000
            uin = "100000000001"
            secret_id = "AKID1"
            secret_key = "k1"
            [[accounts.sub_users]]
            uin = "100000000002"
            secret_id = "AKID2"
            secret_key = "k2"
            allow = ["mongodb:Describe*"]
            [[instances]]
            id = "cmgo-abcd1234"
            replica_sets = ["mongodb://127.0.0.1:27017"]
            "#,
        )
        .unwrap();
        assert_eq!(c.public_url, None);
        let e = parse(
            "[server]\ntls_cert_file = \"c\"\ntls_key_file = \"k\"\npublic_url = \"http://x\"",
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("public_url"), "{e:#}");
        assert_eq!(c.metadata_url, "sqlite:///var/lib/mongobak/meta.db");
        assert_eq!(c.api.rate_limits.per_action["DescribeDBInstances"], 50);
        assert_eq!(c.accounts[0].sub_accounts[0].policy.resources, vec!["*"]);
        assert_eq!(c.instances.len(), 1);
    }

    #[test]
    fn mistakes_are_named() {
        let e = parse("[server]\nlisten = \"nowhere\"").unwrap_err();
        assert!(format!("{e:#}").contains("listen"), "{e:#}");
        let e = parse("[server]\nlsten = \"127.0.0.1:1\"").unwrap_err();
        assert!(format!("{e:#}").contains("lsten"), "{e:#}");
        let e = parse("[server]\ntls_cert_file = \"c.pem\"").unwrap_err();
        assert!(format!("{e:#}").contains("together"), "{e:#}");
        let e = parse("[server]\ntimezone = \"Mars/Olympus\"").unwrap_err();
        assert!(format!("{e:#}").contains("timezone"), "{e:#}");
        let e = parse("[[instances]]\nreplica_sets = []").unwrap_err();
        assert!(format!("{e:#}").contains("replica_sets"), "{e:#}");
        let e = parse("[server]\nnotify_webhook = \"ftp://x\"").unwrap_err();
        assert!(format!("{e:#}").contains("notify_webhook"), "{e:#}");
        let e = parse("[backups]\ngc_grace_hours = 0").unwrap_err();
        assert!(format!("{e:#}").contains("gc_grace_hours"), "{e:#}");
        for level in ["0", "20", "-8"] {
            let e = parse(&format!("[backups]\nzstd_level = {level}")).unwrap_err();
            assert!(format!("{e:#}").contains("zstd_level"), "{e:#}");
        }
        for wrong in ["attempts = 0", "attempts = 11", "retry_delay_secs = 0"] {
            let e = parse(&format!("[backups]\n{wrong}")).unwrap_err();
            let key = wrong.split(' ').next().unwrap();
            assert!(format!("{e:#}").contains(key), "{e:#}");
        }
        for wrong in [
            "seal_interval_secs = 0",
            "seal_interval_secs = 601",
            "max_slice_mib = 0",
            "max_slice_mib = 1025",
            "enabled = \"yes\"",
        ] {
            let e = parse(&format!("[pitr]\n{wrong}")).unwrap_err();
            let key = wrong.split(' ').next().unwrap();
            assert!(format!("{e:#}").contains(key), "{e:#}");
        }
        let pitr = parse("[pitr]\nseal_interval_secs = 5\nmax_slice_mib = 8")
            .unwrap()
            .pitr
            .expect("on by default");
        assert_eq!(pitr.seal_interval.as_secs(), 5);
        assert_eq!(pitr.max_slice_bytes, 8 << 20);
        assert!(parse("[pitr]\nenabled = false").unwrap().pitr.is_none());
        for wrong in [
            "header_read_timeout_secs = 0",
            "idle_timeout_secs = 0",
            "max_connections = 0",
            "admin_listen = \"nowhere\"",
        ] {
            let e = parse(&format!("[server]\n{wrong}")).unwrap_err();
            let key = wrong.split(' ').next().unwrap();
            assert!(format!("{e:#}").contains(key), "{e:#}");
        }
        let c = parse(
            "[server]\nheader_read_timeout_secs = 3\nidle_timeout_secs = 4\nmax_connections = 50\n\
             admin_listen = \"127.0.0.1:9100\"\nmin_free_disk_mib = 0",
        )
        .unwrap();
        assert_eq!(c.server.header_read_timeout.as_secs(), 3);
        assert_eq!(c.server.idle_timeout.as_secs(), 4);
        assert_eq!(c.server.max_connections, Some(50));
        assert_eq!(c.server.min_free_disk_bytes, 0);
        assert_eq!(c.admin_listen.unwrap().to_string(), "127.0.0.1:9100");
        let e = parse("[backups]\ncompression = \"lz5\"").unwrap_err();
        assert!(format!("{e:#}").contains("lz5"), "{e:#}");
        let e = parse("[backups]\ncompression = \"none\"\nzstd_level = 3").unwrap_err();
        assert!(format!("{e:#}").contains("only to compression"), "{e:#}");
    }

    #[test]
    fn storage_settings() {
        let c = parse(
            "[storage]\nurl = \"s3://backups/mongobak?endpoint=http://127.0.0.1:9100&region=us-east-1\"\n\
             access_key_id = \"AKIAEXAMPLE\"\nsecret_access_key = \"very-secret\"\n\
             [downloads]\npresigned_urls = true",
        )
        .unwrap();
        assert!(c.storage_url.starts_with("s3://backups/"));
        let credentials = c.storage.credentials.as_ref().unwrap();
        assert_eq!(credentials.access_key_id, "AKIAEXAMPLE");
        assert!(!format!("{credentials:?}").contains("very-secret"));
        assert!(c.api.downloads.presigned);
        assert!(!parse("").unwrap().api.downloads.presigned);
        let e = parse("[storage]\nurl = \"ftp://x\"").unwrap_err();
        assert!(format!("{e:#}").contains("[storage] url"), "{e:#}");
        let e = parse("[storage]\naccess_key_id = \"A\"").unwrap_err();
        assert!(format!("{e:#}").contains("go together"), "{e:#}");
        let e = parse("[metadata]\nurl = \"mysql://u:pw@h/db\"").unwrap_err();
        assert!(!format!("{e:#}").contains("pw"), "no secret in {e:#}");
        assert_eq!(
            parse("[metadata]\nurl = \"postgres://mongobak@db/meta\"")
                .unwrap()
                .metadata_url,
            "postgres://mongobak@db/meta"
        );
    }

    #[test]
    fn compression_settings() {
        let compression = |toml: &str| parse(toml).unwrap().backups.dump.compression;
        assert_eq!(compression(""), Compression::Zstd(1));
        assert_eq!(
            compression("[backups]\nzstd_level = 9"),
            Compression::Zstd(9)
        );
        assert_eq!(
            compression("[backups]\nzstd_level = -5"),
            Compression::Zstd(-5)
        );
        assert_eq!(
            compression("[backups]\ncompression = \"zstd\"\nzstd_level = 3"),
            Compression::Zstd(3)
        );
        assert_eq!(
            compression("[backups]\ncompression = \"none\""),
            Compression::None
        );
    }

    #[test]
    fn schedule_settings() {
        let c = parse("").unwrap();
        assert!(c.scheduler.automatic);
        assert_eq!(c.scheduler.timezone.iana_name(), Some("Asia/Shanghai"));
        assert_eq!(c.gc_grace, jiff::SignedDuration::from_hours(24));
        assert_eq!(c.backups.attempts, 3);
        assert_eq!(c.backups.retry_delay.as_secs(), 30);
        let c = parse(
            "[server]\ntimezone = \"UTC\"\nnotify_webhook = \"https://hooks.example/m\"\n\
             [backups]\nautomatic = false\ngc_grace_hours = 6\ndefault_retention_days = 9\n\
             attempts = 1\nretry_delay_secs = 5",
        )
        .unwrap();
        assert!(!c.scheduler.automatic);
        assert_eq!(c.scheduler.timezone.iana_name(), Some("UTC"));
        assert_eq!(c.scheduler.default_retention_days, 9);
        assert_eq!(c.api.default_retention_days, 9);
        assert_eq!(c.gc_grace, jiff::SignedDuration::from_hours(6));
        assert_eq!(c.backups.attempts, 1);
        assert_eq!(c.backups.retry_delay.as_secs(), 5);
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's closure signature
    fn environment_overrides_the_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("m.toml", "[server]\nlisten = \"127.0.0.1:1000\"\n")?;
            jail.set_env("MONGOBAK_SERVER_LISTEN", "127.0.0.1:2000");
            jail.set_env("MONGOBAK_RATE_LIMITS_DEFAULT", "7");
            jail.set_env("MONGOBAK_ENDPOINT", "http://ignored");
            jail.set_env("MONGOBAK_BACKUPS_AUTOMATIC", "false");
            let c = Config::load(Some(Path::new("m.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(c.listen.to_string(), "127.0.0.1:2000");
            assert_eq!(c.api.rate_limits.default_per_second, 7);
            assert!(!c.scheduler.automatic);
            Ok(())
        });
    }
}
