//! The two request signatures of Tencent Cloud API 3.0, both directions.
//!
//! * TC3-HMAC-SHA256 (`docs/protocol.md` §1.1): an Authorization header over
//!   a canonical request, with a key derived from the secret, the UTC date
//!   and the service named in the credential scope.
//! * The legacy v1 signature (§1.2): HMAC-SHA1 or HMAC-SHA256 over the
//!   method, host and the sorted, decoded parameters, sent as `Signature`.
//!
//! The server verifies with these functions and the `mongobak` client signs
//! with the same ones, so both sides agree by construction; the official SDKs
//! are the independent check (tests/sdk). Comparisons of computed signatures
//! run in constant time.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The algorithm name that opens a TC3 Authorization header.
pub const TC3_ALGORITHM: &str = "TC3-HMAC-SHA256";
/// Value of `X-TC-Content-SHA256` that replaces the body hash.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

type HmacSha256 = Hmac<Sha256>;

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// Lowercase hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex_string(&Sha256::digest(data))
}

/// The lowercase hex digits of a 32-byte digest.
fn hex_digits(digest: &[u8]) -> [u8; 64] {
    let mut out = [0u8; 64];
    hex::encode_to_slice(digest, &mut out).expect("a 32-byte digest");
    out
}

/// [`hex_digits`] as a `String`.
fn hex_string(digest: &[u8]) -> String {
    String::from_utf8(hex_digits(digest).to_vec()).expect("hex digits are ASCII")
}

/// The TC3 signing key of `secret_key` for the credential scope's `date`
/// and `service`: three chained HMACs. A server sees the same few keys all
/// day, so each thread keeps the last few it derived.
fn signing_key(secret_key: &str, date: &str, service: &str) -> [u8; 32] {
    /// Keys kept per thread; more accounts than this just derive again.
    const KEPT: usize = 8;
    struct Derived {
        secret_key: String,
        date: String,
        service: String,
        key: [u8; 32],
    }
    thread_local! {
        static DERIVED: std::cell::RefCell<Vec<Derived>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    DERIVED.with_borrow_mut(|derived| {
        if let Some(hit) = derived
            .iter()
            .find(|d| d.secret_key == secret_key && d.date == date && d.service == service)
        {
            return hit.key;
        }
        let k_date = hmac_sha256(format!("TC3{secret_key}").as_bytes(), date.as_bytes());
        let k_service = hmac_sha256(&k_date, service.as_bytes());
        let key: [u8; 32] = hmac_sha256(&k_service, b"tc3_request")
            .try_into()
            .expect("HMAC-SHA256 gives 32 bytes");
        if derived.len() == KEPT {
            derived.remove(0);
        }
        derived.push(Derived {
            secret_key: secret_key.to_string(),
            date: date.to_string(),
            service: service.to_string(),
            key,
        });
        key
    })
}

/// The parts of a TC3 Authorization header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tc3Authorization {
    /// The SecretId of the credential scope.
    pub secret_id: String,
    /// The UTC date (`YYYY-MM-DD`) of the credential scope.
    pub date: String,
    /// The service of the credential scope, as the client chose it (the
    /// Node.js SDK derives it from the endpoint, so it is not always `mongodb`).
    pub service: String,
    /// Lowercase names of the signed headers, in the order given.
    pub signed_headers: Vec<String>,
    /// The signature, 64 lowercase hex digits.
    pub signature: String,
}

/// Why an Authorization header could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthorizationError {
    /// The header does not start with `TC3-HMAC-SHA256 `.
    #[error("the Authorization header must start with `TC3-HMAC-SHA256 `")]
    Algorithm,
    /// `Credential`, `SignedHeaders` or `Signature` is absent or malformed.
    #[error("the Authorization header must hold Credential=<SecretId>/<Date>/<Service>/tc3_request, SignedHeaders=... and Signature=<64 hex digits>")]
    Malformed,
}

impl Tc3Authorization {
    /// Parses `TC3-HMAC-SHA256 Credential=.../tc3_request, SignedHeaders=...,
    /// Signature=...`.
    pub fn parse(header: &str) -> Result<Self, AuthorizationError> {
        let rest = header
            .strip_prefix(TC3_ALGORITHM)
            .and_then(|r| r.strip_prefix(' '))
            .ok_or(AuthorizationError::Algorithm)?;
        let (mut credential, mut signed_headers, mut signature) = (None, None, None);
        for part in rest.split(',') {
            let (key, value) = part
                .trim()
                .split_once('=')
                .ok_or(AuthorizationError::Malformed)?;
            let slot = match key {
                "Credential" => &mut credential,
                "SignedHeaders" => &mut signed_headers,
                "Signature" => &mut signature,
                _ => return Err(AuthorizationError::Malformed),
            };
            if slot.replace(value).is_some() {
                return Err(AuthorizationError::Malformed);
            }
        }
        let (credential, signed_headers, signature) = match (credential, signed_headers, signature)
        {
            (Some(c), Some(h), Some(s)) => (c, h, s),
            _ => return Err(AuthorizationError::Malformed),
        };
        let scope = credential
            .strip_suffix("/tc3_request")
            .ok_or(AuthorizationError::Malformed)?;
        let (secret_id, scope) = scope.split_once('/').ok_or(AuthorizationError::Malformed)?;
        let (date, service) = scope.split_once('/').ok_or(AuthorizationError::Malformed)?;
        let valid_hex = signature.len() == 64 && signature.bytes().all(|b| b.is_ascii_hexdigit());
        let signed_headers: Vec<String> = signed_headers
            .split(';')
            .map(|h| h.to_ascii_lowercase())
            .collect();
        if secret_id.is_empty()
            || date.is_empty()
            || service.is_empty()
            || !valid_hex
            || signed_headers.iter().any(|h| h.is_empty())
        {
            return Err(AuthorizationError::Malformed);
        }
        Ok(Tc3Authorization {
            secret_id: secret_id.to_string(),
            date: date.to_string(),
            service: service.to_string(),
            signed_headers,
            signature: signature.to_ascii_lowercase(),
        })
    }
}

/// Everything a TC3 signature covers besides the key.
#[derive(Debug, Clone)]
pub struct Tc3Request<'a> {
    /// `GET` or `POST`.
    pub method: &'a str,
    /// The raw query string as sent (`""` for POST).
    pub query: &'a str,
    /// `(lowercase name, value)` of each signed header, in SignedHeaders order.
    pub headers: &'a [(&'a str, &'a str)],
    /// Hex SHA-256 of the body (or of `UNSIGNED-PAYLOAD`).
    pub payload_hash: &'a str,
    /// `X-TC-Timestamp`.
    pub timestamp: i64,
    /// The credential scope's date.
    pub date: &'a str,
    /// The credential scope's service.
    pub service: &'a str,
}

impl Tc3Request<'_> {
    /// The hex signature of this request under `secret_key`.
    pub fn sign(&self, secret_key: &str) -> String {
        // The canonical request goes straight into its hash.
        let mut canonical = Sha256::new();
        for part in [self.method, "\n/\n", self.query, "\n"] {
            canonical.update(part);
        }
        for (name, value) in self.headers {
            for part in [*name, ":", value.trim(), "\n"] {
                canonical.update(part);
            }
        }
        canonical.update("\n");
        for (n, (name, _)) in self.headers.iter().enumerate() {
            if n > 0 {
                canonical.update(";");
            }
            canonical.update(name);
        }
        canonical.update("\n");
        canonical.update(self.payload_hash);
        let mut mac = HmacSha256::new_from_slice(&signing_key(secret_key, self.date, self.service))
            .expect("HMAC takes keys of any length");
        for part in [TC3_ALGORITHM, "\n"] {
            mac.update(part.as_bytes());
        }
        mac.update(self.timestamp.to_string().as_bytes());
        for part in ["\n", self.date, "/", self.service, "/tc3_request\n"] {
            mac.update(part.as_bytes());
        }
        mac.update(&hex_digits(&canonical.finalize()));
        hex_string(&mac.finalize().into_bytes())
    }

    /// The full Authorization header value for `secret_id` / `secret_key`.
    pub fn authorization(&self, secret_id: &str, secret_key: &str) -> String {
        let signed: Vec<&str> = self.headers.iter().map(|(n, _)| *n).collect();
        format!(
            "{TC3_ALGORITHM} Credential={secret_id}/{}/{}/tc3_request, SignedHeaders={}, Signature={}",
            self.date,
            self.service,
            signed.join(";"),
            self.sign(secret_key)
        )
    }
}

/// The Authorization header of a JSON `POST /` signed as the official SDKs
/// and tccli sign it (`docs/protocol.md` §1.1): SignedHeaders
/// `content-type;host`, the body's hash, the credential scope's date the
/// UTC day of `timestamp`.
///
/// With a `trace_id`, the request's `X-TC-TraceId` is signed too
/// (SignedHeaders `content-type;host;x-tc-traceid`). With a fresh trace ID
/// per request, two identical calls within one second have different
/// signatures, so neither is taken for a replay of the other.
pub fn sign_json_post(
    host: &str,
    trace_id: Option<&str>,
    body: &[u8],
    timestamp: i64,
    service: &str,
    secret_id: &str,
    secret_key: &str,
) -> String {
    let date = jiff::Timestamp::from_second(timestamp)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .strftime("%Y-%m-%d")
        .to_string();
    let mut signed = vec![("content-type", "application/json"), ("host", host)];
    if let Some(trace_id) = trace_id {
        signed.push(("x-tc-traceid", trace_id));
    }
    Tc3Request {
        method: "POST",
        query: "",
        headers: &signed,
        payload_hash: &sha256_hex(body),
        timestamp,
        date: &date,
        service,
    }
    .authorization(secret_id, secret_key)
}

/// The hash function of a v1 signature (`SignatureMethod`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V1Method {
    /// `HmacSHA1`, the default when SignatureMethod is absent.
    HmacSha1,
    /// `HmacSHA256`.
    HmacSha256,
}

impl V1Method {
    /// Parses the `SignatureMethod` parameter.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "HmacSHA1" => Some(V1Method::HmacSha1),
            "HmacSHA256" => Some(V1Method::HmacSha256),
            _ => None,
        }
    }

    /// The parameter value naming this method.
    pub fn name(self) -> &'static str {
        match self {
            V1Method::HmacSha1 => "HmacSHA1",
            V1Method::HmacSha256 => "HmacSHA256",
        }
    }
}

/// The v1 string to sign: `METHOD host /?k=v&...`, parameters (without
/// `Signature`) sorted by key bytes, values decoded.
pub fn v1_string_to_sign(method: &str, host: &str, params: &[(&str, &str)]) -> String {
    let mut sorted: Vec<&(&str, &str)> = params.iter().filter(|(k, _)| *k != "Signature").collect();
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut out = format!("{method}{host}/?");
    for (i, (k, v)) in sorted.into_iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// The base64 v1 signature of `string_to_sign`.
pub fn v1_sign(method: V1Method, secret_key: &str, string_to_sign: &str) -> String {
    let digest = match method {
        V1Method::HmacSha1 => {
            let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret_key.as_bytes())
                .expect("HMAC takes keys of any length");
            mac.update(string_to_sign.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        V1Method::HmacSha256 => hmac_sha256(secret_key.as_bytes(), string_to_sign.as_bytes()),
    };
    base64::engine::general_purpose::STANDARD.encode(digest)
}

/// Compares a computed signature with a received one in constant time.
pub fn signatures_match(computed: &str, received: &str) -> bool {
    computed.as_bytes().ct_eq(received.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of the API 3.0 signature documentation (CVM
    /// DescribeInstances with the documentation's example key).
    #[test]
    fn tc3_matches_the_documented_example() {
        let body = r#"{"Limit": 1, "Filters": [{"Values": ["\u672a\u547d\u540d"], "Name": "instance-name"}]}"#;
        let hash = sha256_hex(body.as_bytes());
        let headers = [
            ("content-type", "application/json; charset=utf-8"),
            ("host", "cvm.tencentcloudapi.com"),
        ];
        let req = Tc3Request {
            method: "POST",
            query: "",
            headers: &headers,
            payload_hash: &hash,
            timestamp: 1551113065,
            date: "2019-02-25",
            service: "cvm",
        };
        assert_eq!(
            req.sign("Gu5t9xGARNpq86cd98joQYCN3*******"),
            "2230eefd229f582d8b1b891af7107b91597240707d778ab3738f756258d7652c"
        );
    }

    #[test]
    fn authorization_round_trips() {
        let headers = [
            ("content-type", "application/json"),
            ("host", "127.0.0.1:9000"),
        ];
        let req = Tc3Request {
            method: "POST",
            query: "",
            headers: &headers,
            payload_hash: &sha256_hex(b"{}"),
            timestamp: 1_700_000_000,
            date: "2023-11-14",
            service: "mongodb",
        };
        let header = req.authorization("AKIDx", "key");
        let parsed = Tc3Authorization::parse(&header).unwrap();
        assert_eq!(parsed.secret_id, "AKIDx");
        assert_eq!(parsed.service, "mongodb");
        assert_eq!(parsed.signed_headers, vec!["content-type", "host"]);
        assert!(signatures_match(&req.sign("key"), &parsed.signature));
        assert!(!signatures_match(&req.sign("other"), &parsed.signature));
    }

    #[test]
    fn json_post_signs_the_sdk_header_set() {
        let header = sign_json_post(
            "127.0.0.1:9000",
            None,
            b"{}",
            1_700_000_000,
            "mongodb",
            "AKIDx",
            "key",
        );
        let parsed = Tc3Authorization::parse(&header).unwrap();
        assert_eq!(parsed.date, "2023-11-14", "the UTC day of the timestamp");
        assert_eq!(parsed.signed_headers, vec!["content-type", "host"]);
        let req = Tc3Request {
            method: "POST",
            query: "",
            headers: &[
                ("content-type", "application/json"),
                ("host", "127.0.0.1:9000"),
            ],
            payload_hash: &sha256_hex(b"{}"),
            timestamp: 1_700_000_000,
            date: "2023-11-14",
            service: "mongodb",
        };
        assert_eq!(parsed.signature, req.sign("key"));
    }

    #[test]
    fn malformed_authorizations_are_refused() {
        for bad in [
            "SKIP",
            "TC3-HMAC-SHA256",
            "TC3-HMAC-SHA256 Credential=a/b/c/tc3_request, SignedHeaders=host",
            "TC3-HMAC-SHA256 Credential=a/b/tc3_request, SignedHeaders=host, Signature=00",
            "TC3-HMAC-SHA256 Credential=a/2020-01-01/x/other, SignedHeaders=host, Signature=0000000000000000000000000000000000000000000000000000000000000000",
            "TC3-HMAC-SHA256 Credential=a/2020-01-01/x/tc3_request, SignedHeaders=, Signature=0000000000000000000000000000000000000000000000000000000000000000",
        ] {
            assert!(Tc3Authorization::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn v1_sorts_by_key_and_skips_signature() {
        let s = v1_string_to_sign(
            "GET",
            "cvm.tencentcloudapi.com",
            &[
                ("Nonce", "1"),
                ("Action", "X"),
                ("Signature", "zzz"),
                ("Region", "ap guangzhou"),
            ],
        );
        assert_eq!(
            s,
            "GETcvm.tencentcloudapi.com/?Action=X&Nonce=1&Region=ap guangzhou"
        );
        // Expected values from: printf %s "$s" | openssl dgst -sha1 -hmac k -binary | base64
        assert_eq!(
            v1_sign(V1Method::HmacSha1, "k", &s),
            "crIi7Ak3n5FCLx5WjtVj7ImQn+0="
        );
        assert_eq!(
            v1_sign(V1Method::HmacSha256, "k", &s),
            "VEfMIGvtBlch5I1spE2/2vvU4i//pxw4nyVam8Zh9PA="
        );
    }
}
