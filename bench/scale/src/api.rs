//! Calls to the nodes' API as a client of the Tencent Cloud API 3.0 makes
//! them: a JSON `POST /` signed TC3-HMAC-SHA256 with
//! `mongobak_api::signature::sign_json_post` (the function the server's
//! verifier and the official SDKs agree on), as the root account the
//! generated configuration declares. Also plain GETs of download URLs.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use jiff::Timestamp;
use mongobak_api::signature::sign_json_post;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The root account of the generated configuration.
pub const APP_ID: u64 = 1_250_000_001;
/// Its Uin.
pub const UIN: &str = "100000000001";
/// Its SecretId.
pub const SECRET_ID: &str = "AKIDbenchScale0000000000000000000001";
/// Its SecretKey.
pub const SECRET_KEY: &str = "benchScaleSecretKey00000000001";
/// The region of every call and of the instance.
pub const REGION: &str = "ap-guangzhou";

/// Time limit of one HTTP exchange.
const HTTP_TIMEOUT: Duration = Duration::from_secs(60);

/// An API client.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
}

impl Api {
    /// A client with a time limit per exchange.
    pub fn new() -> anyhow::Result<Api> {
        // TLS through rustls with ring, as mongobak itself.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder().timeout(HTTP_TIMEOUT).build()?;
        Ok(Api { http })
    }

    /// Calls `action` on the node at `addr` and returns the `Response`
    /// object; an API error (`Response.Error`) is an error here.
    pub async fn call(&self, addr: SocketAddr, action: &str, body: Value) -> anyhow::Result<Value> {
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
            SECRET_ID,
            SECRET_KEY,
        );
        let answer = self
            .http
            .post(format!("http://{host}/"))
            .header("content-type", "application/json")
            .header("x-tc-traceid", &trace_id)
            .header("x-tc-action", action)
            .header("x-tc-version", "2019-07-25")
            .header("x-tc-timestamp", timestamp.to_string())
            .header("x-tc-region", REGION)
            .header("authorization", authorization)
            .body(body)
            .send()
            .await
            .with_context(|| format!("{action} to {addr}"))?;
        let status = answer.status();
        let bytes = answer.bytes().await?;
        if !status.is_success() {
            bail!(
                "{action} to {addr}: HTTP {status}: {}",
                String::from_utf8_lossy(&bytes)
            );
        }
        let json: Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("{action} to {addr}: the answer is not JSON"))?;
        let response = json["Response"].clone();
        if let Some(error) = response.get("Error") {
            bail!(
                "{action} to {addr}: {} {} (RequestId {})",
                error["Code"].as_str().unwrap_or("?"),
                error["Message"].as_str().unwrap_or("?"),
                response["RequestId"].as_str().unwrap_or("?")
            );
        }
        Ok(response)
    }

    /// GETs `url` and reads the body through SHA-256; fails unless it
    /// answers 200. Returns the body's length and its hex SHA-256.
    pub async fn fetch_sha256(&self, url: &str) -> anyhow::Result<(u64, String)> {
        let mut answer = self.http.get(url).send().await?;
        if answer.status() != reqwest::StatusCode::OK {
            bail!("GET {url}: HTTP {}", answer.status());
        }
        let mut hasher = Sha256::new();
        let mut length = 0;
        while let Some(chunk) = answer.chunk().await? {
            length += chunk.len() as u64;
            hasher.update(&chunk);
        }
        Ok((length, hex::encode(hasher.finalize())))
    }
}
