//! From raw HTTP request to an authenticated call.
//!
//! The clients send three styles (`docs/protocol.md` §1): POST JSON or
//! GET/POST form with a TC3-HMAC-SHA256 Authorization header and `X-TC-*`
//! headers, or GET/POST form with the legacy v1 signature where everything,
//! `Signature` included, is a parameter. [`Envelope::parse`] finds the style
//! and the common parameters, [`Envelope::authenticate`] checks the clock
//! and the signature, and [`Envelope::into_params`] yields the business
//! parameters as one tree for [`crate::params::Params`].
//!
//! Signatures are verified over the bytes as received: the raw body, the raw
//! query string, and the Host header the client used (with its port, and
//! without it, since Node.js signs the bare hostname; `docs/protocol.md` §1.1).

use bytes::Bytes;
use http::{HeaderMap, Method};
use jiff::Timestamp;
use serde_json::Value;

use crate::access::{Caller, Directory};
use crate::error::{ApiError, ErrorKind};
use crate::params::unflatten;
use crate::signature::{self, Tc3Authorization, Tc3Request, V1Method};

/// A request as it came off the wire.
#[derive(Debug, Clone)]
pub struct RawRequest {
    /// The HTTP method.
    pub method: Method,
    /// The Host the client addressed (Host header, or the HTTP/2 authority),
    /// exactly as sent.
    pub host: Option<String>,
    /// The raw query string, without the `?`.
    pub query: Option<String>,
    /// The request headers.
    pub headers: HeaderMap,
    /// The body, already bounded by the server's size limit.
    pub body: Bytes,
}

/// Parameters of the v1 signature and the common parameters that travel
/// with it; none of them is a business parameter.
const V1_COMMON: &[&str] = &[
    "Action",
    "Version",
    "Region",
    "Timestamp",
    "Nonce",
    "SecretId",
    "SignatureMethod",
    "Signature",
    "Token",
    "Language",
    "RequestClient",
];

/// The common part of a request, before its signature is checked.
#[derive(Debug)]
pub struct Envelope {
    /// `Action`.
    pub action: String,
    /// `Version`.
    pub version: String,
    /// `Region`, absent when the client has none configured.
    pub region: Option<String>,
    timestamp: i64,
    style: Style,
    token: Option<String>,
}

#[derive(Debug)]
enum Style {
    Tc3 {
        authorization: Tc3Authorization,
        body: BodyKind,
    },
    V1 {
        method: V1Method,
        secret_id: String,
        signature: String,
        /// Every decoded `key=value` pair, common ones included.
        pairs: Vec<(String, String)>,
    },
}

#[derive(Debug, Clone, Copy)]
enum BodyKind {
    /// GET: parameters in the query string.
    Query,
    /// POST `application/json`.
    Json,
    /// POST `application/x-www-form-urlencoded`.
    Form,
}

impl Envelope {
    /// The action named by a request, if any, without validating anything
    /// else; used to label logs and metrics of requests that fail early.
    pub fn peek_action(raw: &RawRequest) -> Option<String> {
        if let Some(action) = header(&raw.headers, "x-tc-action") {
            return Some(action.to_string());
        }
        let from = |bytes: &[u8]| {
            form_urlencoded::parse(bytes)
                .find(|(k, _)| k == "Action")
                .map(|(_, v)| v.into_owned())
        };
        raw.query
            .as_deref()
            .and_then(|q| from(q.as_bytes()))
            .or_else(|| {
                if raw.method == Method::POST {
                    from(&raw.body)
                } else {
                    None
                }
            })
    }

    /// Finds the request style and its common parameters.
    pub fn parse(raw: &RawRequest) -> Result<Self, ApiError> {
        if raw.method != Method::GET && raw.method != Method::POST {
            return Err(ApiError::new(
                ErrorKind::UnsupportedProtocol,
                format!(
                    "The HTTP method {} is not supported: use GET or POST.",
                    raw.method
                ),
            ));
        }
        match raw.headers.get(http::header::AUTHORIZATION) {
            Some(value) => Self::parse_tc3(raw, value),
            None => Self::parse_v1(raw),
        }
    }

    fn parse_tc3(raw: &RawRequest, value: &http::HeaderValue) -> Result<Self, ApiError> {
        let invalid = |e: &dyn std::fmt::Display| {
            ApiError::new(
                ErrorKind::InvalidAuthorization,
                format!("The Authorization header is malformed: {e}."),
            )
        };
        let text = value.to_str().map_err(|_| invalid(&"it is not ASCII"))?;
        let authorization = Tc3Authorization::parse(text).map_err(|e| invalid(&e))?;
        let body = if raw.method == Method::GET {
            BodyKind::Query
        } else {
            let content_type = header(&raw.headers, "content-type").unwrap_or("");
            let media = content_type.split(';').next().unwrap_or("").trim();
            if media.eq_ignore_ascii_case("application/json") {
                BodyKind::Json
            } else if media.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
                BodyKind::Form
            } else {
                return Err(ApiError::invalid(
                    "Content-Type",
                    "application/json or application/x-www-form-urlencoded",
                ));
            }
        };
        let required = |name: &str, param: &str| {
            header(&raw.headers, name)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
                .ok_or_else(|| ApiError::missing(param))
        };
        Ok(Envelope {
            action: required("x-tc-action", "Action")?,
            version: required("x-tc-version", "Version")?,
            timestamp: parse_timestamp(&required("x-tc-timestamp", "Timestamp")?)?,
            region: header(&raw.headers, "x-tc-region")
                .filter(|r| !r.is_empty())
                .map(str::to_string),
            token: header(&raw.headers, "x-tc-token").map(str::to_string),
            style: Style::Tc3 {
                authorization,
                body,
            },
        })
    }

    fn parse_v1(raw: &RawRequest) -> Result<Self, ApiError> {
        let source: &[u8] = match raw.method {
            Method::GET => raw.query.as_deref().unwrap_or("").as_bytes(),
            _ => &raw.body,
        };
        let pairs: Vec<(String, String)> = form_urlencoded::parse(source)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .filter(|v| !v.is_empty())
        };
        let required = |name: &str| {
            get(name)
                .map(str::to_string)
                .ok_or_else(|| ApiError::missing(name))
        };
        let action = required("Action")?;
        let version = required("Version")?;
        let timestamp = parse_timestamp(&required("Timestamp")?)?;
        let signature = required("Signature")?;
        let secret_id = required("SecretId")?;
        let nonce = required("Nonce")?;
        if nonce.parse::<u64>().is_err() {
            return Err(ApiError::invalid("Nonce", "an unsigned integer"));
        }
        let method = match get("SignatureMethod") {
            None => V1Method::HmacSha1,
            Some(name) => V1Method::parse(name).ok_or_else(|| {
                ApiError::invalid_value("SignatureMethod", "expected HmacSHA1 or HmacSHA256")
            })?,
        };
        Ok(Envelope {
            action,
            version,
            region: get("Region").map(str::to_string),
            timestamp,
            token: get("Token").map(str::to_string),
            style: Style::V1 {
                method,
                secret_id,
                signature,
                pairs,
            },
        })
    }

    /// Checks the clock, the key and the signature, and returns who signed.
    pub fn authenticate<'d>(
        &self,
        raw: &RawRequest,
        directory: &'d Directory,
        now: Timestamp,
        max_skew_secs: i64,
    ) -> Result<&'d Caller, ApiError> {
        let skew = now.as_second().abs_diff(self.timestamp);
        if skew > max_skew_secs.unsigned_abs() {
            return Err(ApiError::new(
                ErrorKind::SignatureExpire,
                format!(
                    "The request timestamp {} is {skew} s away from the server time {}; \
                     the limit is {max_skew_secs} s. Check the client's clock.",
                    self.timestamp,
                    now.as_second()
                ),
            ));
        }
        if self.token.as_deref().is_some_and(|t| !t.is_empty()) {
            return Err(ApiError::new(
                ErrorKind::TokenFailure,
                "Temporary credentials (a Token) are not supported; sign with a permanent key.",
            ));
        }
        let secret_id = match &self.style {
            Style::Tc3 { authorization, .. } => &authorization.secret_id,
            Style::V1 { secret_id, .. } => secret_id,
        };
        let (secret_key, caller) = directory.lookup(secret_id).ok_or_else(|| {
            ApiError::new(
                ErrorKind::SecretIdNotFound,
                "The SecretId is not found; check the key or whether it was disabled.",
            )
        })?;
        let host = raw.host.as_deref().unwrap_or("");
        let hosts = host_variants(host);
        let valid = match &self.style {
            Style::Tc3 { authorization, .. } => {
                self.verify_tc3(raw, authorization, secret_key, &hosts)?
            }
            Style::V1 {
                method,
                signature,
                pairs,
                ..
            } => verify_v1(raw, *method, signature, pairs, secret_key, &hosts),
        };
        if valid {
            Ok(caller)
        } else {
            Err(ApiError::new(
                ErrorKind::SignatureFailure,
                "The request signature does not match; check the SecretKey and the signing method.",
            ))
        }
    }

    fn verify_tc3(
        &self,
        raw: &RawRequest,
        authorization: &Tc3Authorization,
        secret_key: &str,
        hosts: &[&str],
    ) -> Result<bool, ApiError> {
        let expected_date = Timestamp::from_second(self.timestamp)
            .map(|t| {
                let day = jiff::tz::TimeZone::UTC.to_datetime(t).date();
                format!("{:04}-{:02}-{:02}", day.year(), day.month(), day.day())
            })
            .unwrap_or_default();
        if !["content-type", "host"]
            .iter()
            .all(|required| authorization.signed_headers.iter().any(|h| h == required))
        {
            return Err(ApiError::new(
                ErrorKind::SignatureFailure,
                format!(
                    "SignedHeaders must include content-type and host; the request signs only {}.",
                    authorization.signed_headers.join(";")
                ),
            ));
        }
        if authorization.date != expected_date {
            return Err(ApiError::new(
                ErrorKind::SignatureFailure,
                format!(
                    "The credential date {} is not the UTC date of the timestamp ({expected_date}).",
                    crate::error::clip(&authorization.date)
                ),
            ));
        }
        let payload_hash =
            if header(&raw.headers, "x-tc-content-sha256") == Some(signature::UNSIGNED_PAYLOAD) {
                signature::sha256_hex(signature::UNSIGNED_PAYLOAD.as_bytes())
            } else {
                signature::sha256_hex(&raw.body)
            };
        let query = match raw.method {
            Method::GET => raw.query.as_deref().unwrap_or(""),
            _ => "",
        };
        let method = raw.method.as_str();
        for host in hosts {
            let mut headers = Vec::with_capacity(authorization.signed_headers.len());
            for name in &authorization.signed_headers {
                let value = if name == "host" {
                    Some(*host)
                } else {
                    header(&raw.headers, name)
                };
                match value {
                    Some(v) => headers.push((name.as_str(), v)),
                    None => return Ok(false),
                }
            }
            let request = Tc3Request {
                method,
                query,
                headers: &headers,
                payload_hash: &payload_hash,
                timestamp: self.timestamp,
                date: &authorization.date,
                service: &authorization.service,
            };
            if signature::signatures_match(&request.sign(secret_key), &authorization.signature) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The fingerprint of the request's signature, for the memory of used
    /// signatures ([`crate::replay`]): SHA-256 over the style, the SecretId
    /// and the signature as sent.
    pub fn signature_fingerprint(&self) -> crate::replay::Fingerprint {
        use sha2::{Digest, Sha256};
        let (style, secret_id, signature): (&[u8], &str, &str) = match &self.style {
            Style::Tc3 { authorization, .. } => {
                (b"tc3", &authorization.secret_id, &authorization.signature)
            }
            Style::V1 {
                secret_id,
                signature,
                ..
            } => (b"v1", secret_id, signature),
        };
        let mut hash = Sha256::new();
        for part in [style, secret_id.as_bytes(), signature.as_bytes()] {
            hash.update((part.len() as u64).to_le_bytes());
            hash.update(part);
        }
        hash.finalize().into()
    }

    /// The request's timestamp, in unix seconds.
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }

    /// The business parameters as one tree: the JSON body, or the flattened
    /// query / form unflattened (common parameters left out).
    pub fn into_params(self, raw: &RawRequest) -> Result<Value, ApiError> {
        match self.style {
            Style::Tc3 { body, .. } => match body {
                BodyKind::Json if raw.body.iter().all(u8::is_ascii_whitespace) => {
                    Ok(Value::Object(Default::default()))
                }
                BodyKind::Json => serde_json::from_slice(&raw.body).map_err(|e| {
                    ApiError::new(
                        ErrorKind::InvalidParameter,
                        format!("The request body is not valid JSON: {e}."),
                    )
                }),
                BodyKind::Query => flat_params(raw.query.as_deref().unwrap_or("").as_bytes()),
                BodyKind::Form => flat_params(&raw.body),
            },
            Style::V1 { pairs, .. } => unflatten(
                pairs
                    .iter()
                    .filter(|(k, _)| !V1_COMMON.contains(&k.as_str()))
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            ),
        }
    }
}

fn flat_params(source: &[u8]) -> Result<Value, ApiError> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(source)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    unflatten(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

fn verify_v1(
    raw: &RawRequest,
    method: V1Method,
    received: &str,
    pairs: &[(String, String)],
    secret_key: &str,
    hosts: &[&str],
) -> bool {
    let as_sent: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    // The Python SDK signs keys with `_` rewritten to `.` but sends them
    // unchanged (`docs/protocol.md` §1.2), so try that spelling too when it differs.
    let dotted: Vec<(String, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.replace('_', "."), v.as_str()))
        .collect();
    let dotted: Vec<(&str, &str)> = dotted.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let mut spellings = vec![as_sent.as_slice()];
    if pairs.iter().any(|(k, _)| k.contains('_')) {
        spellings.push(dotted.as_slice());
    }
    for host in hosts {
        for params in &spellings {
            let string_to_sign = signature::v1_string_to_sign(raw.method.as_str(), host, params);
            if signature::signatures_match(
                &signature::v1_sign(method, secret_key, &string_to_sign),
                received,
            ) {
                return true;
            }
        }
    }
    false
}

/// The Host as sent, then without its `:port` (Node.js signs the hostname).
fn host_variants(host: &str) -> Vec<&str> {
    let mut hosts = vec![host];
    if let Some((name, port)) = host.rsplit_once(':') {
        if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && !name.is_empty() {
            hosts.push(name);
        }
    }
    hosts
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn parse_timestamp(text: &str) -> Result<i64, ApiError> {
    text.trim()
        .parse::<i64>()
        .ok()
        .filter(|t| (0..=253_402_300_799).contains(t))
        .ok_or_else(|| ApiError::invalid("Timestamp", "a Unix time in seconds"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_variants_strip_only_a_numeric_port() {
        assert_eq!(
            host_variants("127.0.0.1:9000"),
            vec!["127.0.0.1:9000", "127.0.0.1"]
        );
        assert_eq!(
            host_variants("http://127.0.0.1:9000"),
            vec!["http://127.0.0.1:9000", "http://127.0.0.1"]
        );
        assert_eq!(host_variants("example.com"), vec!["example.com"]);
        assert_eq!(host_variants("[::1]:80"), vec!["[::1]:80", "[::1]"]);
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp("1700000000").unwrap(), 1_700_000_000);
        assert_eq!(
            parse_timestamp("-1").unwrap_err().kind(),
            ErrorKind::InvalidParameter
        );
        assert_eq!(
            parse_timestamp("soon").unwrap_err().kind(),
            ErrorKind::InvalidParameter
        );
    }
}
