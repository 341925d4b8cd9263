//! The Tencent Cloud API 3.0 front door of mongobak.
//!
//! [`Api::handle`] takes a request as it came off the wire ([`RawRequest`])
//! and returns the JSON envelope to send back ([`Reply`]), after these steps,
//! in this order (`docs/protocol.md` §1.4):
//!
//! 1. [`request`]: find the style (TC3 header or v1 `Signature`) and the
//!    common parameters (`MissingParameter` when one is absent);
//! 2. check the timestamp window, the SecretId and the signature
//!    ([`signature`], [`access`]);
//! 3. check Version, Action and Region;
//! 4. check the caller's AppId, its policy for the action, the rate limit
//!    and that the signature is not a replay ([`access`], [`ratelimit`],
//!    [`replay`]);
//! 5. parse the business parameters into the action's typed request
//!    ([`params`]) and run the handler ([`actions`]), which answers with
//!    the action's response type ([`model`], shared with the client).
//!
//! Every failure is an [`ApiError`] rendered with HTTP 200, as the official
//! clients expect. This crate knows no HTTP server; `server` wires it to axum.

pub mod access;
pub mod actions;
pub mod download;
pub mod download_url;
pub mod error;
pub mod model;
pub mod params;
pub mod ratelimit;
pub mod replay;
pub mod request;
pub mod signature;

use std::collections::BTreeSet;

use jiff::tz::TimeZone;
use jiff::Timestamp;

pub use access::{Directory, Policy, RootAccount, SubAccount};
pub use actions::{caps, Action, ListCap, LIST_CAPS};
pub use download_url::UrlSigner;
pub use error::{ApiError, ErrorKind};
pub use mongobak_catalog::{CatalogError, OplogPosition};
pub use ratelimit::RateLimits;
pub use request::RawRequest;

use mongobak_blob::BlobStore;
use mongobak_catalog::Catalog;

/// The only API version of the mongodb service.
pub const API_VERSION: &str = "2019-07-25";

/// Regions served when the configuration names none (`docs/protocol.md` §5).
pub const DEFAULT_REGIONS: &[&str] = &[
    "ap-guangzhou",
    "ap-shanghai",
    "ap-nanjing",
    "ap-beijing",
    "ap-chengdu",
    "ap-chongqing",
    "ap-hongkong",
    "ap-singapore",
    "ap-jakarta",
    "ap-bangkok",
    "ap-seoul",
    "ap-tokyo",
    "ap-mumbai",
    "na-siliconvalley",
    "na-ashburn",
    "eu-frankfurt",
    "sa-saopaulo",
    "ap-shanghai-fsi",
    "ap-shenzhen-fsi",
];

/// Settings of the API layer.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Regions a request may name.
    pub regions: BTreeSet<String>,
    /// Rate limits per (account, action).
    pub rate_limits: RateLimits,
    /// Largest accepted distance between the request timestamp and the
    /// server clock, in seconds (300, as on Tencent Cloud).
    pub max_clock_skew_secs: i64,
    /// Zone of every `YYYY-MM-DD hh:mm:ss` string the API shows.
    pub timezone: TimeZone,
    /// How download URLs are made.
    pub downloads: DownloadSettings,
    /// Retention of an instance without a backup rule (DescribeBackupRules
    /// shows it as `BackupSaveTime`).
    pub default_retention_days: i64,
    /// Whether continuous oplog backup runs (`[pitr] enabled`): without
    /// it FlashBackDBInstance is refused.
    pub point_in_time: bool,
}

/// How DescribeBackupDownloadTask makes download URLs.
#[derive(Debug, Clone)]
pub struct DownloadSettings {
    /// Base of the URLs (`[server] public_url`).
    pub public_url: String,
    /// Signs them.
    pub signer: UrlSigner,
    /// How long a URL handed out stays valid (24 h, as on TencentDB).
    pub url_ttl: jiff::SignedDuration,
    /// The `Bucket` field shown with each task.
    pub bucket: String,
    /// Hand out URLs presigned by the object store (S3, COS), so clients
    /// download from the store directly; the node's own signed
    /// `/download/...` URLs otherwise, and on a file system.
    pub presigned: bool,
}

impl Default for DownloadSettings {
    fn default() -> Self {
        DownloadSettings {
            public_url: "http://127.0.0.1:9000".into(),
            // A fresh random key: URLs from another process do not verify.
            signer: UrlSigner::new(uuid::Uuid::new_v4().as_bytes().to_vec()),
            url_ttl: jiff::SignedDuration::from_hours(24),
            bucket: "mongobak".into(),
            presigned: false,
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            regions: DEFAULT_REGIONS.iter().map(|r| r.to_string()).collect(),
            rate_limits: RateLimits::default(),
            max_clock_skew_secs: 300,
            timezone: TimeZone::get("Asia/Shanghai").unwrap_or(TimeZone::UTC),
            downloads: DownloadSettings::default(),
            default_retention_days: 7,
            point_in_time: true,
        }
    }
}

/// The API: accounts, limits and the catalog behind the actions.
#[derive(Debug)]
pub struct Api {
    config: ApiConfig,
    directory: Directory,
    limiter: ratelimit::RateLimiter,
    replays: replay::ReplayGuard,
    catalog: Catalog,
    store: BlobStore,
    /// DescribeDBInstances' rendering of each registered instance.
    rendered_instances: actions::RenderedInstances,
}

/// What [`Api::handle`] answers, with what the server logs and counts.
#[derive(Debug)]
pub struct Reply {
    /// The RequestId of the envelope.
    pub request_id: String,
    /// The action named by the request, when there was one.
    pub action: Option<String>,
    /// The Uin that signed, once authenticated.
    pub caller_uin: Option<String>,
    /// The error answered, `None` on success.
    pub error: Option<ApiError>,
    /// The JSON envelope; send it with HTTP 200 and
    /// `Content-Type: application/json` exactly.
    pub body: Vec<u8>,
}

impl Reply {
    /// The envelope of `error` for a request that was never read or never
    /// answered (a body over the size limit, a handler that panicked).
    pub fn refusal(error: ApiError) -> Reply {
        let request_id = new_request_id();
        Reply {
            body: error_envelope(&error, &request_id),
            request_id,
            action: None,
            caller_uin: None,
            error: Some(error),
        }
    }
}

impl Api {
    /// The API over `catalog` and `store` for the callers in `accounts`.
    pub fn new(
        config: ApiConfig,
        accounts: &[RootAccount],
        catalog: Catalog,
        store: BlobStore,
    ) -> Self {
        Api {
            limiter: ratelimit::RateLimiter::new(config.rate_limits.clone()),
            directory: Directory::new(accounts),
            replays: replay::ReplayGuard::default(),
            config,
            catalog,
            store,
            rendered_instances: Default::default(),
        }
    }

    /// Answers one request.
    pub async fn handle(&self, raw: RawRequest) -> Reply {
        let mut action = None;
        let mut caller_uin = None;
        let result = self.process(&raw, &mut action, &mut caller_uin).await;
        let request_id = new_request_id();
        let (body, error) = match result {
            Ok(fields) => (envelope(fields, &request_id), None),
            Err(e) => (error_envelope(&e, &request_id), Some(e)),
        };
        Reply {
            request_id,
            action: action.or_else(|| request::Envelope::peek_action(&raw)),
            caller_uin,
            error,
            body,
        }
    }

    /// Answers a request refused before it could be read (for example a
    /// body over the size limit).
    pub fn refuse(&self, error: ApiError) -> Reply {
        Reply::refusal(error)
    }

    async fn process(
        &self,
        raw: &RawRequest,
        action_name: &mut Option<String>,
        caller_uin: &mut Option<String>,
    ) -> Result<actions::Fields, ApiError> {
        let envelope = request::Envelope::parse(raw)?;
        *action_name = Some(envelope.action.clone());
        let now = Timestamp::now();
        let caller =
            envelope.authenticate(raw, &self.directory, now, self.config.max_clock_skew_secs)?;
        *caller_uin = Some(caller.uin.clone());
        if envelope.version != API_VERSION {
            return Err(ApiError::new(
                ErrorKind::NoSuchVersion,
                format!(
                    "The version {} does not exist for mongodb; use {API_VERSION}.",
                    error::clip(&envelope.version)
                ),
            ));
        }
        let action = Action::resolve(&envelope.action)?;
        let region = envelope
            .region
            .clone()
            .ok_or_else(|| ApiError::missing("Region"))?;
        if !self.config.regions.contains(&region) {
            return Err(ApiError::new(
                ErrorKind::UnsupportedRegion,
                format!("The region {} is not served here.", error::clip(&region)),
            ));
        }
        caller.check_app_id()?;
        caller.authorize_action(action.name())?;
        if !self
            .limiter
            .acquire(&self.catalog, &caller.owner_uin, action.name())
            .await
        {
            return Err(ApiError::new(
                ErrorKind::RequestLimitExceeded,
                format!(
                    "Too many {} requests per second for this account; retry later.",
                    action.name()
                ),
            ));
        }
        // Remembered until the timestamp leaves the clock window.
        let forgotten_at = envelope
            .timestamp()
            .saturating_add(self.config.max_clock_skew_secs)
            .saturating_add(1);
        self.replays
            .check(
                &self.catalog,
                &envelope.signature_fingerprint(),
                action,
                now.as_second(),
                forgotten_at,
            )
            .await?;
        let params = params::Params::new(envelope.into_params(raw)?)?;
        let ctx = actions::CallContext {
            api: self,
            caller,
            region: &region,
        };
        actions::dispatch(&ctx, action, params).await
    }

    /// Formats `t` as the API shows times: `YYYY-MM-DD hh:mm:ss` in the
    /// configured zone.
    pub fn format_time(&self, t: Timestamp) -> String {
        self.format_zoned(t, "%Y-%m-%d %H:%M:%S")
    }

    /// Formats `t` in the configured zone with a `strftime` format.
    pub fn format_zoned(&self, t: Timestamp, format: &str) -> String {
        t.to_zoned(self.config.timezone.clone())
            .strftime(format)
            .to_string()
    }

    /// [`format_time`](Self::format_time), or `""` for no time.
    pub fn format_optional_time(&self, t: Option<Timestamp>) -> String {
        t.map(|t| self.format_time(t)).unwrap_or_default()
    }

    /// Parses a `YYYY-MM-DD hh:mm:ss` parameter in the configured zone
    /// (`InvalidParameterValue.TimeFormatErr` naming `name` otherwise).
    pub fn parse_time(&self, name: &str, text: &str) -> Result<Timestamp, ApiError> {
        actions::parse_api_time(&self.config.timezone, name, text)
    }

    /// The blob store behind the API.
    pub fn store(&self) -> &BlobStore {
        &self.store
    }

    /// How download URLs are made and checked.
    pub fn download_settings(&self) -> &DownloadSettings {
        &self.config.downloads
    }

    /// The metadata store behind the API.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Whether the metadata store answers.
    pub async fn ping_catalog(&self) -> Result<(), CatalogError> {
        self.catalog.ping().await
    }

    /// How far each replica set's oplog is saved by continuous oplog
    /// backup.
    pub async fn oplog_positions(&self) -> Result<Vec<OplogPosition>, CatalogError> {
        self.catalog.oplog().positions().await
    }

    /// The stored bytes of each registered instance's backups and of their
    /// oplog slices, `(instance, all bytes, oplog bytes)`, oldest instance
    /// first (0 for an instance without backups).
    pub async fn stored_bytes_per_instance(&self) -> Result<Vec<(String, u64, u64)>, CatalogError> {
        let stored = self.catalog.backups().stored_bytes_per_instance().await?;
        let instances = self.catalog.instances().all().await?;
        Ok(instances
            .iter()
            .map(|instance| {
                let (all, oplog) = stored
                    .iter()
                    .find(|(id, _, _)| *id == instance.id)
                    .map_or((0, 0), |(_, all, oplog)| (*all, *oplog));
                (instance.id.to_string(), all, oplog)
            })
            .collect())
    }
}

/// A RequestId: a version 4 UUID, lowercase. Drawn from the thread's
/// userspace generator rather than one system call per request.
fn new_request_id() -> String {
    uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .to_string()
}

/// `{"Response": {<fields>, "RequestId": ...}}`, spliced from the already
/// serialized fields (a UUID needs no escaping).
fn envelope(fields: actions::Fields, request_id: &str) -> Vec<u8> {
    let fields = fields.as_bytes();
    let mut out = Vec::with_capacity(fields.len() + request_id.len() + 32);
    out.extend_from_slice(b"{\"Response\":");
    out.extend_from_slice(&fields[..fields.len() - 1]);
    if fields.len() > 2 {
        out.push(b',');
    }
    out.extend_from_slice(b"\"RequestId\":\"");
    out.extend_from_slice(request_id.as_bytes());
    out.extend_from_slice(b"\"}}");
    out
}

/// `{"Response": {"Error": {"Code", "Message"}, "RequestId"}}`.
fn error_envelope(error: &ApiError, request_id: &str) -> Vec<u8> {
    let body = serde_json::json!({
        "Response": {
            "Error": {"Code": error.code(), "Message": error.message()},
            "RequestId": request_id,
        }
    });
    serde_json::to_vec(&body).expect("a JSON value serializes")
}

/// Maps a metadata store failure onto the API error users see. Store
/// faults are logged in full here and answered as a bare `InternalError`.
pub(crate) fn catalog_error(error: CatalogError) -> ApiError {
    match error {
        CatalogError::InstanceExists { id } => ApiError::new(
            ErrorKind::InvalidParameterValue,
            format!("An instance with ID {id} already exists."),
        ),
        CatalogError::BackupInProgress { instance_id } => ApiError::new(
            ErrorKind::StatusAbnormal,
            format!("A backup of instance {instance_id} is already queued or running; wait for it to finish."),
        ),
        e @ (CatalogError::UnsupportedUrl { .. }
        | CatalogError::CreateDir { .. }
        | CatalogError::Corrupt { .. }
        | CatalogError::Database(_)
        | CatalogError::Migrate(_)) => {
            tracing::error!(error = %e, "metadata store failure");
            ApiError::internal()
        }
    }
}
