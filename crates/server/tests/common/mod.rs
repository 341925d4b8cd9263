//! Shared fixtures of the server tests: an in-process server on a free
//! port over a fresh SQLite catalog and its accounts, TC3 requests built
//! field by field, and a raw HTTP/1.1 client that sends exactly the bytes a
//! test asks for. Ordinary API calls, GETs and waits come from
//! `mongobak_testkit`.

// Each test binary uses a part of this module and of its re-exports.
#![allow(dead_code, unused_imports)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use mongobak_api::signature::{sha256_hex, Tc3Request};
use mongobak_api::{Api, ApiConfig, Policy, RootAccount, SubAccount};
use mongobak_blob::BlobStore;
use mongobak_catalog::{Catalog, ClusterType, Instance, InstanceId, InstanceSource};
use mongobak_server::ServerConfig;
use mongobak_testkit::api::{self, Fetched, Http};
use mongobak_worker::{BackupRunner, BackupRunnerConfig, DownloadRunner, DownloadRunnerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

pub const ROOT_ID: &str = "AKIDrootrootrootrootrootrootroot0001";
pub const ROOT_KEY: &str = "rootsecretrootsecretrootsecret01";
pub const ROOT_UIN: &str = "100000000001";
/// Sub-account of root allowed only mongodb:DescribeDBBackups.
pub const SUB_ID: &str = "AKIDsubsubsubsubsubsubsubsubsub00002";
pub const SUB_KEY: &str = "subsecretsubsecretsubsecretsub02";
/// Sub-account of root allowed every action, on `SHANGHAI_INSTANCE` only.
pub const NARROW_ID: &str = "AKIDnarrownarrownarrownarrownarr0003";
pub const NARROW_KEY: &str = "narrowsecretnarrowsecretnarrow03";
/// Another root account, owner of `OTHER_INSTANCE`.
pub const OTHER_ID: &str = "AKIDotherotherotherotherotherothe0004";
pub const OTHER_KEY: &str = "othersecretothersecretothersecr04";
pub const INSTANCE: &str = "cmgo-test0001";
pub const SHANGHAI_INSTANCE: &str = "cmgo-shang001";
pub const OTHER_INSTANCE: &str = "cmgo-other001";

pub use mongobak_testkit::api::code_of;

/// A running server; stops when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub task: Option<tokio::task::JoinHandle<()>>,
    pub catalog: Catalog,
    pub store: BlobStore,
    /// Calls as the root account in ap-guangzhou.
    pub http: Http,
    _dir: tempfile::TempDir,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn instance(id: &str, region: &str, owner: &str, uri: &str) -> Instance {
    Instance {
        id: InstanceId::parse(id).expect("an instance ID"),
        name: format!("name of {id}"),
        region: region.into(),
        owner_uin: owner.into(),
        cluster_type: ClusterType::ReplicaSet,
        replica_set_uris: vec![uri.into()],
        mongos_uri: None,
        source: InstanceSource::Cli,
        created_at: Timestamp::now(),
        server_version: String::new(),
    }
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_full(ServerConfig::default(), None).await
    }

    pub async fn start_with(config: ServerConfig) -> Self {
        Self::start_full(config, None).await
    }

    /// A server whose instances point at `mongo_uri`, with a backup runner.
    pub async fn start_with_mongo(mongo_uri: &str) -> Self {
        Self::start_full(ServerConfig::default(), Some(mongo_uri)).await
    }

    async fn start_full(config: ServerConfig, mongo_uri: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(&format!("sqlite://{}/meta.db", dir.path().display()))
            .await
            .unwrap();
        let uri = mongo_uri.unwrap_or("mongodb://u:secret@127.0.0.1:27017/?directConnection=true");
        for i in [
            instance(INSTANCE, "ap-guangzhou", ROOT_UIN, uri),
            instance(SHANGHAI_INSTANCE, "ap-shanghai", ROOT_UIN, uri),
            instance(OTHER_INSTANCE, "ap-guangzhou", "100000000009", uri),
        ] {
            catalog.instances().add(&i).await.unwrap();
        }
        let sub = |uin: &str, id: &str, key: &str, allow: &str, resource: &str| SubAccount {
            uin: uin.into(),
            secret_id: id.into(),
            secret_key: key.into(),
            disabled: false,
            policy: Policy {
                allow: vec![allow.into()],
                resources: vec![resource.into()],
            },
        };
        let accounts = [
            RootAccount {
                app_id: Some(1_250_000_000),
                uin: ROOT_UIN.into(),
                secret_id: ROOT_ID.into(),
                secret_key: ROOT_KEY.into(),
                disabled: false,
                sub_accounts: vec![
                    sub(
                        "100000000002",
                        SUB_ID,
                        SUB_KEY,
                        "mongodb:DescribeDBBackups",
                        "*",
                    ),
                    sub(
                        "100000000003",
                        NARROW_ID,
                        NARROW_KEY,
                        "mongodb:*",
                        "qcs::mongodb:*:uin/100000000001:instance/cmgo-shang001",
                    ),
                ],
            },
            RootAccount {
                app_id: Some(1_250_000_009),
                uin: "100000000009".into(),
                secret_id: OTHER_ID.into(),
                secret_key: OTHER_KEY.into(),
                disabled: false,
                sub_accounts: Vec::new(),
            },
        ];
        let store = BlobStore::open(&format!("file://{}/blobs", dir.path().display())).unwrap();
        let mut api_config = ApiConfig::default();
        api_config.rate_limits.default_per_second = 1000;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        api_config.downloads.public_url = format!("http://{addr}");
        let api = Arc::new(Api::new(
            api_config,
            &accounts,
            catalog.clone(),
            store.clone(),
        ));
        let shutdown = CancellationToken::new();
        if mongo_uri.is_some() {
            let runner = BackupRunner::new(
                catalog.clone(),
                store.clone(),
                BackupRunnerConfig {
                    poll_interval: Duration::from_millis(100),
                    progress_interval: Duration::from_millis(200),
                    // Failures are seen at once; the runner's retries
                    // have tests of their own.
                    attempts: 1,
                    ..BackupRunnerConfig::default()
                },
            );
            tokio::spawn(runner.run(shutdown.clone()));
            let downloads = DownloadRunner::new(
                catalog.clone(),
                store.clone(),
                DownloadRunnerConfig {
                    heartbeat: Duration::from_millis(200),
                    poll_interval: Duration::from_millis(100),
                    ..DownloadRunnerConfig::default()
                },
            );
            tokio::spawn(downloads.run(shutdown.clone()));
        }
        let token = shutdown.clone();
        let task = tokio::spawn(async move {
            mongobak_server::run(listener, api, config, token)
                .await
                .unwrap();
        });
        TestServer {
            addr,
            shutdown,
            task: Some(task),
            catalog,
            store,
            http: Http::new(ROOT_ID, ROOT_KEY, "ap-guangzhou"),
            _dir: dir,
        }
    }

    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Calls `action` as the root account with a JSON body; returns the
    /// `Response` object.
    pub async fn call(&self, action: &str, body: serde_json::Value) -> serde_json::Value {
        self.http.call(self.addr, action, body).await
    }

    /// Calls `action` with the key `(secret id, secret key)` in `region`.
    pub async fn call_as(
        &self,
        key: (&str, &str),
        region: &str,
        action: &str,
        body: serde_json::Value,
    ) -> serde_json::Value {
        let http = self.http.as_caller(key.0, key.1, region);
        http.call(self.addr, action, body).await
    }

    /// Takes a backup of `INSTANCE` and waits for it; returns its name.
    pub async fn take_backup(&self) -> String {
        api::take_backup(&self.http, self.addr, INSTANCE).await
    }

    /// Waits for the download task of `backup` (replica set `<INSTANCE>_0`)
    /// to be done; returns it as DescribeBackupDownloadTask lists it.
    pub async fn wait_download(&self, backup: &str) -> serde_json::Value {
        api::wait_download(&self.http, self.addr, INSTANCE, backup).await
    }

    /// `GET` of a URL handed out by the API, with extra headers.
    pub async fn get(&self, url: &str, headers: &[(&str, &str)]) -> Fetched {
        self.http
            .get_with(url, headers)
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
    }
}

/// An HTTP response as read off the socket.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// `Response.Error.Code`, or None for a success envelope.
    pub fn error_code(&self) -> Option<String> {
        let json = self.json();
        assert!(
            json["Response"]["RequestId"].is_string(),
            "no RequestId: {json}"
        );
        json["Response"]["Error"]["Code"]
            .as_str()
            .map(str::to_string)
    }
}

/// Sends `head` (request line and headers, without the final blank line)
/// and `body` over a fresh connection and reads the whole response.
pub async fn send_raw(addr: SocketAddr, head: &str, body: &[u8]) -> RawResponse {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!(
        "{head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    stream.write_all(&request).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> RawResponse {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    RawResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..line_end]).unwrap().trim(), 16)
                .unwrap();
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// What a TC3-signed test request is made of.
pub struct Tc3 {
    pub method: &'static str,
    pub action: String,
    pub version: String,
    pub region: Option<String>,
    pub timestamp: i64,
    pub content_type: String,
    pub query: String,
    pub body: Vec<u8>,
    /// The Host header sent.
    pub host: String,
    /// The host the signature covers (defaults to `host`).
    pub signed_host: Option<String>,
    pub service: String,
    pub secret_id: String,
    pub secret_key: String,
    pub extra_headers: Vec<(String, String)>,
    /// An `X-TC-TraceId` sent and signed, which the official SDKs do not
    /// sign: it makes two identical calls in one second differ.
    pub signed_trace_id: Option<String>,
}

impl Tc3 {
    /// A POST JSON DescribeDBInstances by the root account.
    pub fn post_json(server: &TestServer, body: &str) -> Self {
        Tc3 {
            method: "POST",
            action: "DescribeDBInstances".into(),
            version: "2019-07-25".into(),
            region: Some("ap-guangzhou".into()),
            timestamp: Timestamp::now().as_second(),
            content_type: "application/json".into(),
            query: String::new(),
            body: body.as_bytes().to_vec(),
            host: server.host(),
            signed_host: None,
            service: "mongodb".into(),
            secret_id: ROOT_ID.into(),
            secret_key: ROOT_KEY.into(),
            extra_headers: Vec::new(),
            signed_trace_id: None,
        }
    }

    /// A GET with flattened parameters in the query.
    pub fn get(server: &TestServer, query: &str) -> Self {
        Tc3 {
            method: "GET",
            content_type: "application/x-www-form-urlencoded".into(),
            query: query.into(),
            body: Vec::new(),
            ..Tc3::post_json(server, "")
        }
    }

    pub fn authorization(&self) -> String {
        let signed_host = self
            .signed_host
            .clone()
            .unwrap_or_else(|| self.host.clone());
        let mut headers = vec![
            ("content-type", self.content_type.as_str()),
            ("host", signed_host.as_str()),
        ];
        if let Some(trace_id) = &self.signed_trace_id {
            headers.push(("x-tc-traceid", trace_id));
        }
        let date = Timestamp::from_second(self.timestamp)
            .unwrap()
            .strftime("%Y-%m-%d")
            .to_string();
        let hash = sha256_hex(&self.body);
        Tc3Request {
            method: self.method,
            query: &self.query,
            headers: &headers,
            payload_hash: &hash,
            timestamp: self.timestamp,
            date: &date,
            service: &self.service,
        }
        .authorization(&self.secret_id, &self.secret_key)
    }

    pub fn head(&self, authorization: &str) -> String {
        let target = if self.query.is_empty() {
            "/".to_string()
        } else {
            format!("/?{}", self.query)
        };
        let mut head = format!(
            "{} {target} HTTP/1.1\r\nHost: {}\r\nContent-Type: {}\r\nX-TC-Action: {}\r\nX-TC-Version: {}\r\nX-TC-Timestamp: {}\r\nAuthorization: {authorization}",
            self.method, self.host, self.content_type, self.action, self.version, self.timestamp
        );
        if let Some(region) = &self.region {
            head.push_str(&format!("\r\nX-TC-Region: {region}"));
        }
        if let Some(trace_id) = &self.signed_trace_id {
            head.push_str(&format!("\r\nX-TC-TraceId: {trace_id}"));
        }
        for (name, value) in &self.extra_headers {
            head.push_str(&format!("\r\n{name}: {value}"));
        }
        head
    }

    pub async fn send(&self, server: &TestServer) -> RawResponse {
        send_raw(server.addr, &self.head(&self.authorization()), &self.body).await
    }
}

/// Builds and signs a v1 request's parameters; returns the encoded
/// parameter string (query or form body).
pub fn v1_params(
    method: &str,
    signed_host: &str,
    business: &[(&str, &str)],
    signature_method: Option<&str>,
    secret_key: &str,
) -> String {
    let timestamp = Timestamp::now().as_second().to_string();
    let mut params: Vec<(String, String)> = business
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for (k, v) in [
        ("Action", "DescribeDBInstances"),
        ("Version", "2019-07-25"),
        ("Region", "ap-guangzhou"),
        ("Timestamp", timestamp.as_str()),
        ("Nonce", "0"),
        ("SecretId", ROOT_ID),
        ("RequestClient", "SDK_TEST_1.0"),
    ] {
        // A business pair of the same name (an Action) takes the place of
        // the default.
        if !business.iter().any(|(name, _)| *name == k) {
            params.push((k.into(), v.into()));
        }
    }
    let method_name = signature_method.unwrap_or("HmacSHA1");
    if let Some(m) = signature_method {
        params.push(("SignatureMethod".into(), m.into()));
    }
    let pairs: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let to_sign = mongobak_api::signature::v1_string_to_sign(method, signed_host, &pairs);
    let signature = mongobak_api::signature::v1_sign(
        mongobak_api::signature::V1Method::parse(method_name)
            .unwrap_or(mongobak_api::signature::V1Method::HmacSha1),
        secret_key,
        &to_sign,
    );
    params.push(("Signature".into(), signature));
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
}
