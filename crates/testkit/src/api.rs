//! Talking to a running mongobak as a client does: TC3-signed API calls as
//! one account (signed by `mongobak_api`'s own signer), plain GETs of the
//! URLs it hands out, and the waits on a backup or a download task that
//! the suites share.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use jiff::Timestamp;
use mongobak_api::signature::sign_json_post;
use reqwest::header::HeaderMap;
use serde_json::{json, Value};

use crate::wait::eventually;

/// The API version every call names.
pub const VERSION: &str = "2019-07-25";
/// Time limit of one HTTP exchange.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// Limit of a wait for a backup or for a download file.
pub const WORK_LIMIT: Duration = Duration::from_secs(120);

/// The HTTP client of the suites: no proxy, and a fresh connection for
/// every request (servers come and go under the tests).
pub fn http_client() -> reqwest::Client {
    // TLS through rustls with ring, as mongobak itself; the provider is
    // process-wide, and one installed earlier is kept.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .expect("an HTTP client")
}

/// A signed API call that can be sent, unchanged, any number of times.
#[derive(Debug, Clone)]
pub struct SignedCall {
    /// The Host header, signed.
    pub host: String,
    /// The JSON body.
    pub body: String,
    /// `X-TC-Timestamp`.
    pub timestamp: i64,
    /// The Authorization header.
    pub authorization: String,
    /// An `X-TC-TraceId` sent and signed (the official SDKs sign none).
    pub trace_id: Option<String>,
}

/// An answer to a GET.
#[derive(Debug)]
pub struct Fetched {
    /// The status code.
    pub status: u16,
    /// The headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl Fetched {
    /// The value of header `name`, when it is there and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Signed API calls as one account in one region, and plain GETs.
#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    secret_id: String,
    secret_key: String,
    region: String,
}

impl Http {
    /// Calls with the key `secret_id`/`secret_key`, naming `region`.
    pub fn new(secret_id: &str, secret_key: &str, region: &str) -> Self {
        Self::with_client(http_client(), secret_id, secret_key, region)
    }

    /// The same client with another key and region.
    pub fn as_caller(&self, secret_id: &str, secret_key: &str, region: &str) -> Self {
        Self::with_client(self.client.clone(), secret_id, secret_key, region)
    }

    fn with_client(
        client: reqwest::Client,
        secret_id: &str,
        secret_key: &str,
        region: &str,
    ) -> Self {
        Http {
            client,
            secret_id: secret_id.into(),
            secret_key: secret_key.into(),
            region: region.into(),
        }
    }

    /// `body` signed as the official SDKs sign it (`content-type;host`)
    /// for the node at `host`.
    pub fn sign_as_sdk(&self, host: SocketAddr, body: Value) -> SignedCall {
        let (host, body) = (host.to_string(), body.to_string());
        let timestamp = Timestamp::now().as_second();
        let authorization = sign_json_post(
            &host,
            None,
            body.as_bytes(),
            timestamp,
            "mongodb",
            &self.secret_id,
            &self.secret_key,
        );
        SignedCall {
            host,
            body,
            timestamp,
            authorization,
            trace_id: None,
        }
    }

    /// Calls `action` on the node at `addr`; returns the `Response` object.
    /// Each call is signed anew, with a trace ID of its own signed too, so
    /// identical calls within a second are no replays of each other.
    pub async fn call(&self, addr: SocketAddr, action: &str, body: Value) -> Value {
        let body = body.to_string();
        let host = addr.to_string();
        let timestamp = Timestamp::now().as_second();
        let trace_id = uuid::Uuid::new_v4().to_string();
        let authorization = sign_json_post(
            &host,
            Some(&trace_id),
            body.as_bytes(),
            timestamp,
            "mongodb",
            &self.secret_id,
            &self.secret_key,
        );
        let call = SignedCall {
            host,
            body,
            timestamp,
            authorization,
            trace_id: Some(trace_id),
        };
        self.send_call(addr, action, &call).await
    }

    /// Sends `call` to `addr` as `action`, as is (its Host included);
    /// returns the `Response` object.
    pub async fn send_call(&self, addr: SocketAddr, action: &str, call: &SignedCall) -> Value {
        let mut request = self
            .client
            .post(format!("http://{addr}/"))
            .header("host", &call.host)
            .header("content-type", "application/json")
            .header("x-tc-action", action)
            .header("x-tc-version", VERSION)
            .header("x-tc-timestamp", call.timestamp.to_string())
            .header("x-tc-region", &self.region)
            .header("authorization", &call.authorization)
            .body(call.body.clone());
        if let Some(trace_id) = &call.trace_id {
            request = request.header("x-tc-traceid", trace_id);
        }
        let answer = self
            .send(request)
            .await
            .unwrap_or_else(|e| panic!("{action} to {addr}: {e}"));
        assert_eq!(answer.status, 200, "{action}: {:?}", answer.body);
        let json: Value = serde_json::from_slice(&answer.body).expect("a JSON answer");
        json["Response"].clone()
    }

    /// GETs `url`; an error when no answer came.
    pub async fn get(&self, url: &str) -> Result<Fetched, String> {
        self.get_with(url, &[]).await
    }

    /// GETs `url` with extra headers.
    pub async fn get_with(&self, url: &str, headers: &[(&str, &str)]) -> Result<Fetched, String> {
        let mut request = self.client.get(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request).await
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Fetched, String> {
        let exchange = async {
            let response = request.send().await.map_err(|e| e.to_string())?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let body = response.bytes().await.map_err(|e| e.to_string())?;
            Ok(Fetched {
                status,
                headers,
                body,
            })
        };
        tokio::time::timeout(HTTP_TIMEOUT, exchange)
            .await
            .map_err(|_| format!("no answer within {HTTP_TIMEOUT:?}"))?
    }
}

/// The error code of a `Response` object, if it is an error.
pub fn code_of(response: &Value) -> Option<&str> {
    response["Error"]["Code"].as_str()
}

/// Takes a backup of `instance` and waits for it; returns its name.
pub async fn take_backup(http: &Http, addr: SocketAddr, instance: &str) -> String {
    let created = http
        .call(
            addr,
            "CreateBackupDBInstance",
            json!({"InstanceId": instance, "BackupMethod": 0}),
        )
        .await;
    let id = created["AsyncRequestId"]
        .as_str()
        .unwrap_or_else(|| panic!("no backup: {created}"))
        .to_string();
    eventually(WORK_LIMIT, "the backup", async || {
        let info = http
            .call(
                addr,
                "DescribeAsyncRequestInfo",
                json!({"AsyncRequestId": id}),
            )
            .await;
        match info["Status"].as_str() {
            Some("success") => Some(info["BackupName"].as_str().unwrap().to_string()),
            Some("initial" | "running") => None,
            _ => panic!("the backup failed: {info}"),
        }
    })
    .await
}

/// Creates the download task of replica set `<instance>_0` of a backup.
pub async fn create_task(http: &Http, addr: SocketAddr, instance: &str, backup: &str) {
    let created = http
        .call(
            addr,
            "CreateBackupDownloadTask",
            json!({"InstanceId": instance, "BackupName": backup,
                   "BackupSets": [{"ReplicaSetId": format!("{instance}_0")}]}),
        )
        .await;
    assert_eq!(code_of(&created), None, "{created}");
}

/// Every download task of `instance`.
pub async fn tasks(http: &Http, addr: SocketAddr, instance: &str) -> Vec<Value> {
    let listed = http
        .call(
            addr,
            "DescribeBackupDownloadTask",
            json!({"InstanceId": instance, "Limit": 100}),
        )
        .await;
    assert_eq!(code_of(&listed), None, "{listed}");
    listed["Tasks"].as_array().cloned().unwrap_or_default()
}

/// Waits for the download task of `backup` (replica set `<instance>_0`) to
/// be done; returns it as DescribeBackupDownloadTask lists it.
pub async fn wait_download(http: &Http, addr: SocketAddr, instance: &str, backup: &str) -> Value {
    eventually(WORK_LIMIT, "packaging", async || {
        let listed = http
            .call(
                addr,
                "DescribeBackupDownloadTask",
                json!({"InstanceId": instance, "BackupName": backup}),
            )
            .await;
        assert_eq!(code_of(&listed), None, "{listed}");
        let task = listed["Tasks"][0].clone();
        match task["Status"].as_i64() {
            Some(2) => Some(task),
            Some(3) => panic!("packaging failed: {task}"),
            _ => None,
        }
    })
    .await
}
