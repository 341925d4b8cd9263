//! Calls to a running mongobak through its API, signed as the official
//! SDKs sign them (TC3-HMAC-SHA256 over `content-type;host`, service
//! `mongodb`, version 2019-07-25), with the server's own signing code.
//!
//! Where the settings come from, first found wins:
//!
//! * keys: `--profile NAME` (tccli's `~/.tccli/NAME.credential`), else
//!   `TENCENTCLOUD_SECRET_ID` / `TENCENTCLOUD_SECRET_KEY` (and
//!   `TENCENTCLOUD_SESSION_TOKEN`), else tccli's `default` profile;
//! * region: `--region`, `TENCENTCLOUD_REGION`, the profile's `region`
//!   (`~/.tccli/NAME.configure`), `ap-guangzhou`;
//! * endpoint: `--endpoint`, `MONGOBAK_ENDPOINT`, the profile's
//!   `mongodb.endpoint` when it names a scheme (tccli needs one for plain
//!   HTTP, so a stock profile's Tencent Cloud host is never taken), then
//!   `http://127.0.0.1:9000`.
//!
//! Calls are typed: [`ApiClient::call`] sends one of the API's request
//! types (`mongobak_api::model`) and returns its response type.
//!
//! Errors become [`Failure`]s: no answer is `Unreachable`, an `Error` in
//! the answer is classified by its code and keeps code, message and
//! RequestId.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use reqwest::Url;
use serde::Deserialize;
use serde_json::Value;

use mongobak_api::model::ActionRequest;
use mongobak_api::signature::sign_json_post;
use mongobak_api::API_VERSION;

use crate::failure::{ApiRefusal, Failure};
use crate::output::Output;

/// The endpoint when nothing names one.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:9000";
/// The region when nothing names one.
const DEFAULT_REGION: &str = "ap-guangzhou";
/// The credential scope's service.
const SERVICE: &str = "mongodb";
/// Time limit for connecting.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time limit of one API call.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest pause in the middle of a download before giving up.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Options shared by the commands that call the API.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// The mongobak API [default: http://127.0.0.1:9000].
    #[arg(long, env = "MONGOBAK_ENDPOINT", value_name = "URL", global = true)]
    pub endpoint: Option<String>,
    /// Take keys, region and endpoint from this tccli profile (~/.tccli/NAME.*).
    #[arg(long, value_name = "NAME", global = true)]
    pub profile: Option<String>,
    /// Region of the instance [default: TENCENTCLOUD_REGION, else the profile's, else ap-guangzhou].
    #[arg(long, value_name = "REGION", global = true)]
    pub region: Option<String>,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Table, global = true)]
    pub output: Output,
}

/// Keys to sign with.
#[derive(Clone)]
struct Credentials {
    secret_id: String,
    secret_key: String,
    token: Option<String>,
}

/// tccli's `<profile>.credential`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProfileCredential {
    secret_id: Option<String>,
    secret_key: Option<String>,
    token: Option<String>,
}

/// What a tccli profile holds for mongobak.
#[derive(Default)]
struct Profile {
    credentials: Option<Credentials>,
    region: Option<String>,
    endpoint: Option<String>,
}

impl Profile {
    /// Reads `<dir>/<name>.credential` and `<dir>/<name>.configure`;
    /// `required` makes a missing credential file an error.
    fn read(dir: &Path, name: &str, required: bool) -> anyhow::Result<Profile> {
        let credential_path = dir.join(format!("{name}.credential"));
        let credentials = match std::fs::read_to_string(&credential_path) {
            Ok(text) => {
                let c: ProfileCredential = serde_json::from_str(&text).with_context(|| {
                    format!(
                        "{} is not a tccli credential file",
                        credential_path.display()
                    )
                })?;
                match (c.secret_id, c.secret_key) {
                    (Some(secret_id), Some(secret_key)) => Some(Credentials {
                        secret_id,
                        secret_key,
                        token: c.token.filter(|t| !t.is_empty()),
                    }),
                    _ => None,
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read {}", credential_path.display()))
            }
        };
        if required && credentials.is_none() {
            return Err(Failure::NoCredentials(format!(
                "the tccli profile {name:?} has no secretId and secretKey in {}; \
                 run `tccli configure --profile {name}`",
                credential_path.display()
            ))
            .into());
        }
        let configure_path = dir.join(format!("{name}.configure"));
        let configure: Value = match std::fs::read_to_string(&configure_path) {
            Ok(text) => serde_json::from_str(&text).with_context(|| {
                format!(
                    "{} is not a tccli configuration file",
                    configure_path.display()
                )
            })?,
            Err(_) => Value::Null,
        };
        let text = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_string);
        Ok(Profile {
            credentials,
            region: text(&configure["_sys_param"]["region"]),
            endpoint: text(&configure["mongodb"]["endpoint"])
                .filter(|e| e.starts_with("http://") || e.starts_with("https://")),
        })
    }
}

/// tccli's folder of profiles, `~/.tccli`.
fn tccli_dir() -> Option<PathBuf> {
    home::home_dir().map(|home| home.join(".tccli"))
}

/// A variable's value, if set and not empty.
fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// An answer of the API: `{"Response": {...}}`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Envelope {
    response: Option<Value>,
}

/// What a `Response` holds when the call was refused.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Refusal {
    error: Option<RefusalError>,
    #[serde(default)]
    request_id: String,
}

/// A refusal's `Error`: `{"Code", "Message"}`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RefusalError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// A client of one mongobak API.
pub struct ApiClient {
    http: reqwest::Client,
    endpoint: Url,
    /// `host[:port]` as the Host header carries it.
    host: String,
    region: String,
    credentials: Credentials,
}

impl ApiClient {
    /// Builds a client from the command line, environment and tccli
    /// profile (see the module documentation).
    pub fn from_args(args: &ClientArgs) -> anyhow::Result<ApiClient> {
        let dir = tccli_dir();
        let profile = match (&args.profile, &dir) {
            (Some(name), Some(dir)) => Profile::read(dir, name, true)?,
            (Some(_), None) => {
                return Err(Failure::NoCredentials(
                    "--profile needs a home folder to find ~/.tccli in".into(),
                )
                .into())
            }
            (None, _) => Profile::default(),
        };
        let from_env = || match (
            var("TENCENTCLOUD_SECRET_ID"),
            var("TENCENTCLOUD_SECRET_KEY"),
        ) {
            (Some(secret_id), Some(secret_key)) => Some(Credentials {
                secret_id,
                secret_key,
                token: var("TENCENTCLOUD_SESSION_TOKEN"),
            }),
            _ => None,
        };
        let default_profile = || {
            dir.as_deref()
                .and_then(|d| Profile::read(d, "default", false).ok())
                .unwrap_or_default()
        };
        let (credentials, fallback) = match profile.credentials.clone() {
            Some(c) => (Some(c), None),
            None => match from_env() {
                Some(c) => (Some(c), None),
                None => {
                    let default = default_profile();
                    (default.credentials.clone(), Some(default))
                }
            },
        };
        let credentials = credentials.ok_or_else(|| {
            Failure::NoCredentials(
                "set TENCENTCLOUD_SECRET_ID and TENCENTCLOUD_SECRET_KEY (on the server's machine, \
                 `eval \"$(mongobak credentials)\"`), or name a tccli profile with --profile"
                    .into(),
            )
        })?;
        let profile_setting = |pick: fn(&Profile) -> Option<String>| {
            pick(&profile).or_else(|| fallback.as_ref().and_then(pick))
        };
        let region = args
            .region
            .clone()
            .or_else(|| var("TENCENTCLOUD_REGION"))
            .or_else(|| profile_setting(|p| p.region.clone()))
            .unwrap_or_else(|| DEFAULT_REGION.to_string());
        let endpoint = args
            .endpoint
            .clone()
            .or_else(|| profile_setting(|p| p.endpoint.clone()))
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        ApiClient::new(&endpoint, &region, credentials)
    }

    fn new(endpoint: &str, region: &str, credentials: Credentials) -> anyhow::Result<ApiClient> {
        let parsed = Url::parse(endpoint)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
            .with_context(|| {
                format!("the endpoint {endpoint:?} is not a URL such as http://127.0.0.1:9000")
            })?;
        let host = match parsed.port() {
            Some(port) => format!("{}:{port}", parsed.host_str().unwrap_or_default()),
            None => parsed.host_str().unwrap_or_default().to_string(),
        };
        // TLS through rustls with ring, as the rest of mongobak; the
        // provider is process-wide, and one installed earlier is kept.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .user_agent(concat!("mongobak/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot set up the HTTP client")?;
        Ok(ApiClient {
            http,
            endpoint: parsed,
            host,
            region: region.to_string(),
            credentials,
        })
    }

    /// The endpoint, for messages.
    pub fn endpoint(&self) -> &str {
        self.endpoint.as_str().trim_end_matches('/')
    }

    /// The region the calls name.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The HTTP client, for downloads.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Calls the action of `request`; returns its answer.
    pub async fn call<R: ActionRequest>(&self, request: &R) -> anyhow::Result<R::Response> {
        let action = R::ACTION.name();
        let body = serde_json::to_string(request)
            .with_context(|| format!("cannot write the parameters of {action}"))?;
        let response = self.send(action, body).await?;
        serde_json::from_value(response).with_context(|| {
            format!(
                "{} answered {action} with fields that are not its answer's: is it a mongobak API endpoint?",
                self.endpoint()
            )
        })
    }

    /// Sends `body` as the parameters of `action`; returns the `Response`
    /// object of a successful answer.
    async fn send(&self, action: &str, body: String) -> anyhow::Result<Value> {
        let timestamp = jiff::Timestamp::now().as_second();
        let trace_id = uuid::Uuid::new_v4().to_string();
        let authorization = sign_json_post(
            &self.host,
            Some(&trace_id),
            body.as_bytes(),
            timestamp,
            SERVICE,
            &self.credentials.secret_id,
            &self.credentials.secret_key,
        );
        let mut request = self
            .http
            .post(self.endpoint.clone())
            .timeout(CALL_TIMEOUT)
            .header("Content-Type", "application/json")
            .header("X-TC-TraceId", &trace_id)
            .header("X-TC-Action", action)
            .header("X-TC-Version", API_VERSION)
            .header("X-TC-Timestamp", timestamp.to_string())
            .header("X-TC-Region", &self.region)
            .header(
                "X-TC-RequestClient",
                concat!("mongobak/", env!("CARGO_PKG_VERSION")),
            )
            .header("Authorization", authorization);
        if let Some(token) = &self.credentials.token {
            request = request.header("X-TC-Token", token);
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| self.unreachable(&e))?;
        if !status.is_success() {
            anyhow::bail!(
                "{} answered HTTP {status} to {action}: is it a mongobak API endpoint?",
                self.endpoint()
            );
        }
        let envelope: Envelope = serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{} answered {action} with something that is not JSON: is it a mongobak API endpoint?",
                self.endpoint()
            )
        })?;
        let response = envelope
            .response
            .with_context(|| format!("the answer to {action} has no Response object"))?;
        if let Ok(Refusal {
            error: Some(error),
            request_id,
        }) = Refusal::deserialize(&response)
        {
            return Err(Failure::from_api(ApiRefusal {
                code: error.code,
                message: error.message,
                request_id,
            })
            .into());
        }
        Ok(response)
    }

    /// The failure for a request that got no answer.
    pub fn unreachable(&self, error: &reqwest::Error) -> Failure {
        unreachable(self.endpoint(), error)
    }
}

/// The failure for a request to `endpoint` that got no answer.
pub fn unreachable(endpoint: &str, error: &reqwest::Error) -> Failure {
    let hint = if error.is_connect() {
        "; is `mongobak serve` running there? (--endpoint or MONGOBAK_ENDPOINT names another)"
    } else {
        ""
    };
    Failure::Unreachable {
        endpoint: endpoint.to_string(),
        reason: format!("{}{hint}", cause(error)),
    }
}

/// The innermost cause of a failed request, which names what happened
/// ("Connection refused") where the outer layers only say "error sending
/// request".
pub fn cause(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return "no answer in time".to_string();
    }
    let mut cause: &dyn std::error::Error = error;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn tccli_profiles() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "p.credential",
            r#"{"secretId": "AKIDp", "secretKey": "kp"}"#,
        );
        write(
            dir.path(),
            "p.configure",
            r#"{"_sys_param": {"region": "ap-shanghai", "output": "json"},
                "mongodb": {"endpoint": "http://127.0.0.1:9100", "version": "2019-07-25"}}"#,
        );
        let p = Profile::read(dir.path(), "p", true).unwrap();
        let c = p.credentials.unwrap();
        assert_eq!(
            (c.secret_id.as_str(), c.secret_key.as_str()),
            ("AKIDp", "kp")
        );
        assert_eq!(c.token, None);
        assert_eq!(p.region.as_deref(), Some("ap-shanghai"));
        assert_eq!(p.endpoint.as_deref(), Some("http://127.0.0.1:9100"));

        // A stock profile names Tencent Cloud's host without a scheme: not taken.
        write(
            dir.path(),
            "stock.configure",
            r#"{"_sys_param": {"region": "ap-guangzhou"},
                "mongodb": {"endpoint": "mongodb.intl.tencentcloudapi.com"}}"#,
        );
        write(
            dir.path(),
            "stock.credential",
            r#"{"secretId": "a", "secretKey": "b", "token": "t"}"#,
        );
        let p = Profile::read(dir.path(), "stock", true).unwrap();
        assert_eq!(p.endpoint, None);
        assert_eq!(p.credentials.unwrap().token.as_deref(), Some("t"));

        // A profile named but missing is an error of its own.
        let err = Profile::read(dir.path(), "absent", true).err().unwrap();
        assert_eq!(crate::failure::exit_code(&err), 4);
        assert!(Profile::read(dir.path(), "absent", false).is_ok());
    }

    #[test]
    fn the_host_header_keeps_a_port_only_when_not_the_default() {
        let keys = || Credentials {
            secret_id: "a".into(),
            secret_key: "b".into(),
            token: None,
        };
        let c = ApiClient::new("http://127.0.0.1:9000", "r", keys()).unwrap();
        assert_eq!(c.host, "127.0.0.1:9000");
        let c = ApiClient::new("https://backup.example.com/", "r", keys()).unwrap();
        assert_eq!(c.host, "backup.example.com");
        assert!(ApiClient::new("127.0.0.1:9000", "r", keys()).is_err());
        assert!(ApiClient::new("ftp://x", "r", keys()).is_err());
    }
}
