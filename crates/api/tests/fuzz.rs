//! Property tests ("fuzzing") of the request parser and the signature
//! verifier: whatever arrives, the API answers with a well-formed envelope
//! and never panics; a signature with any byte changed never verifies.
//!
//! Run longer with `PROPTEST_CASES=100000 cargo test -p mongobak-api --test fuzz`.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use jiff::Timestamp;
use mongobak_api::params::{unflatten, Params};
use mongobak_api::signature::{sha256_hex, signatures_match, Tc3Authorization, Tc3Request};
use mongobak_api::{Api, ApiConfig, RawRequest, RootAccount};
use mongobak_catalog::Catalog;
use proptest::prelude::*;

const SECRET_ID: &str = "AKIDfuzzfuzzfuzzfuzzfuzzfuzzfuzz0001";
const SECRET_KEY: &str = "fuzzkeyfuzzkeyfuzzkeyfuzzkey0001";

struct Fixture {
    runtime: tokio::runtime::Runtime,
    api: Arc<Api>,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/meta.db", dir.path().display());
        let catalog = runtime.block_on(Catalog::open(&url)).unwrap();
        let accounts = [RootAccount {
            app_id: Some(1),
            uin: "1".into(),
            secret_id: SECRET_ID.into(),
            secret_key: SECRET_KEY.into(),
            disabled: false,
            sub_accounts: Vec::new(),
        }];
        let mut config = ApiConfig::default();
        config.rate_limits.default_per_second = u32::MAX;
        let store =
            mongobak_blob::BlobStore::open(&format!("file://{}/blobs", dir.path().display()))
                .unwrap();
        let api = Arc::new(Api::new(config, &accounts, catalog, store));
        Fixture {
            runtime,
            api,
            _dir: dir,
        }
    })
}

/// Answers `raw`, checks the envelope is well formed, returns the error code.
fn check_reply(raw: RawRequest) -> Result<Option<&'static str>, TestCaseError> {
    let f = fixture();
    let reply = f.runtime.block_on(f.api.handle(raw));
    let json: serde_json::Value = serde_json::from_slice(&reply.body).expect("the body is JSON");
    let response = &json["Response"];
    prop_assert_eq!(response["RequestId"].as_str().map(str::len), Some(36));
    if let Some(error) = &reply.error {
        prop_assert_eq!(response["Error"]["Code"].as_str(), Some(error.code()));
        prop_assert!(!error.message().is_empty());
    }
    Ok(reply.error.map(|e| e.code()))
}

/// Parameter keys and values that look like what clients send, with noise.
fn flat_pair() -> impl Strategy<Value = (String, String)> {
    let key = prop_oneof![
        "[A-Za-z]{1,12}",
        "[A-Za-z]{1,8}(\\.[0-9]{1,2}){1,3}",
        "[A-Za-z]{1,8}\\.[0-9]\\.[A-Za-z]{1,8}",
        ".{0,20}",
    ];
    (key, ".{0,16}")
}

fn signed_json_request(body: Vec<u8>, action: String, region: String) -> RawRequest {
    let timestamp = Timestamp::now().as_second();
    let date = Timestamp::from_second(timestamp)
        .unwrap()
        .strftime("%Y-%m-%d")
        .to_string();
    let hash = sha256_hex(&body);
    let headers_signed = [
        ("content-type", "application/json"),
        ("host", "127.0.0.1:9000"),
    ];
    let authorization = Tc3Request {
        method: "POST",
        query: "",
        headers: &headers_signed,
        payload_hash: &hash,
        timestamp,
        date: &date,
        service: "mongodb",
    }
    .authorization(SECRET_ID, SECRET_KEY);
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert(
        "authorization",
        HeaderValue::from_str(&authorization).unwrap(),
    );
    headers.insert(
        "x-tc-timestamp",
        HeaderValue::from_str(&timestamp.to_string()).unwrap(),
    );
    headers.insert("x-tc-version", HeaderValue::from_static("2019-07-25"));
    if let Ok(v) = HeaderValue::from_str(&action) {
        headers.insert("x-tc-action", v);
    }
    if let Ok(v) = HeaderValue::from_str(&region) {
        headers.insert("x-tc-region", v);
    }
    RawRequest {
        method: Method::POST,
        host: Some("127.0.0.1:9000".into()),
        query: None,
        headers,
        body: Bytes::from(body),
    }
}

proptest! {
    /// Arbitrary methods, headers, queries and bodies.
    #[test]
    fn arbitrary_requests_get_an_envelope(
        method in prop_oneof![Just("GET".to_string()), Just("POST".to_string()), Just("PUT".to_string()), "[A-Z]{1,7}"],
        headers in proptest::collection::vec((
            prop_oneof![
                Just("authorization".to_string()),
                Just("x-tc-action".to_string()),
                Just("x-tc-version".to_string()),
                Just("x-tc-timestamp".to_string()),
                Just("x-tc-region".to_string()),
                Just("x-tc-token".to_string()),
                Just("content-type".to_string()),
                Just("x-tc-content-sha256".to_string()),
            ],
            prop_oneof![
                "TC3-HMAC-SHA256 Credential=[A-Za-z0-9/_-]{0,40}, SignedHeaders=[a-z;-]{0,20}, Signature=[0-9a-f]{0,64}",
                "[ -~]{0,40}",
                Just("application/json".to_string()),
                Just("application/x-www-form-urlencoded".to_string()),
                "[0-9]{1,12}",
            ],
        ), 0..8),
        query in proptest::option::of(prop_oneof![
            proptest::collection::vec(flat_pair(), 0..8).prop_map(|pairs| {
                form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
            }),
            "[ -~]{0,60}",
        ]),
        body in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..200),
            "\\{.{0,80}\\}".prop_map(String::into_bytes),
        ],
    ) {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(&value)) {
                map.insert(n, v);
            }
        }
        let raw = RawRequest {
            method: Method::from_bytes(method.as_bytes()).unwrap_or(Method::GET),
            host: Some("127.0.0.1:9000".into()),
            query,
            headers: map,
            body: Bytes::from(body),
        };
        check_reply(raw)?;
    }

    /// Correctly signed requests carrying arbitrary bodies reach the
    /// parameter parser and the handlers.
    #[test]
    fn signed_requests_with_arbitrary_parameters(
        body in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..200),
            proptest::collection::vec(flat_pair(), 0..8).prop_map(|pairs| {
                let map: serde_json::Map<String, serde_json::Value> = pairs
                    .into_iter()
                    .map(|(k, v)| (k, serde_json::Value::String(v)))
                    .collect();
                serde_json::to_vec(&map).unwrap()
            }),
            Just(br#"{"Limit": 1e400, "Offset": -9223372036854775808, "InstanceIds": {"0": [1]}}"#.to_vec()),
        ],
        action in prop_oneof![Just("DescribeDBInstances".to_string()), "[A-Za-z]{0,20}"],
        region in prop_oneof![Just("ap-guangzhou".to_string()), "[a-z-]{0,12}"],
    ) {
        let code = check_reply(signed_json_request(body, action, region))?;
        prop_assert!(!code.unwrap_or("").starts_with("AuthFailure"), "{:?}", code);
    }

    /// Unflattening and typed reads never panic.
    #[test]
    fn params_never_panic(pairs in proptest::collection::vec(flat_pair(), 0..12)) {
        if let Ok(tree) = unflatten(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
            let mut p = Params::new(tree).unwrap();
            for (key, _) in &pairs {
                let top = key.split('.').next().unwrap_or("");
                let _ = p.opt_i64_list(top, 3);
                let _ = p.opt_object_list(top, 3, Some("Id"), |item| item.opt_string("Id"));
                let _ = p.opt_bool(top);
            }
            let _ = p.finish();
        }
    }

    /// Authorization headers of any shape parse or fail cleanly.
    #[test]
    fn authorization_parser_never_panics(header in "[ -~]{0,200}") {
        let _ = Tc3Authorization::parse(&header);
        let _ = Tc3Authorization::parse(&format!("TC3-HMAC-SHA256 {header}"));
    }

    /// Changing any character of a valid signature makes it fail.
    #[test]
    fn altered_signatures_never_verify(position in 0usize..64, replacement in "[0-9a-f]") {
        let headers = [("content-type", "application/json"), ("host", "h:1")];
        let request = Tc3Request {
            method: "POST",
            query: "",
            headers: &headers,
            payload_hash: &sha256_hex(b"{}"),
            timestamp: 1_700_000_000,
            date: "2023-11-14",
            service: "mongodb",
        };
        let good = request.sign(SECRET_KEY);
        let mut altered = good.clone();
        altered.replace_range(position..position + 1, &replacement);
        prop_assert_eq!(signatures_match(&good, &altered), altered == good);
    }
}
