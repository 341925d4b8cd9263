//! Storage URLs: the forms `[storage] url` may take, parsed and checked
//! before anything is built from them.
//!
//! Every mistake is reported with the URL (shown without its query and user
//! part, see [`redact`]) and what to change. Query keys are a closed set per
//! scheme: an unknown one is an error rather than silently ignored, and a
//! key that looks like a credential gets its own error, since URLs end up in
//! logs and configuration listings.

use percent_encoding::percent_decode_str;

use crate::BlobError;

/// A parsed storage URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Location {
    /// `file://PATH`.
    Fs {
        /// The folder, as written (relative paths stay relative).
        root: String,
    },
    /// `s3://BUCKET/PREFIX?...`.
    S3(S3Location),
    /// `cos://BUCKET-APPID/PREFIX?...`.
    Cos(CosLocation),
}

/// Where an S3-compatible store keeps the objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct S3Location {
    pub bucket: String,
    /// `/PREFIX/`, or `/` for the whole bucket.
    pub root: String,
    /// `scheme://host[:port]`; `None` is AWS (or `AWS_ENDPOINT_URL`).
    pub endpoint: Option<String>,
    /// `None`: `AWS_REGION` / `AWS_DEFAULT_REGION`.
    pub region: Option<String>,
    pub virtual_host_style: bool,
}

/// Where a Tencent COS store keeps the objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CosLocation {
    /// `name-appid`.
    pub bucket: String,
    /// `/PREFIX/`, or `/` for the whole bucket.
    pub root: String,
    /// `scheme://host[:port]` without the bucket.
    pub endpoint: String,
}

const S3_KEYS: &[&str] = &["endpoint", "region", "virtual_host_style"];
const COS_KEYS: &[&str] = &["endpoint", "region"];

/// Query keys that would put a secret into the URL.
const CREDENTIAL_KEYS: &[&str] = &[
    "access_key_id",
    "secret_access_key",
    "session_token",
    "secret_id",
    "secret_key",
    "security_token",
    "token",
    "password",
];

const FORMS: &str = "expected file://PATH, s3://BUCKET[/PREFIX][?endpoint=URL&region=REGION\
                     &virtual_host_style=true|false] or cos://BUCKET-APPID[/PREFIX]\
                     ?endpoint=URL|region=REGION";

/// Parses a storage URL.
pub(crate) fn parse(url: &str) -> Result<Location, BlobError> {
    let Some((scheme, _)) = url.split_once("://") else {
        return Err(BlobError::url(url, FORMS));
    };
    match scheme {
        "file" => parse_file(url),
        "s3" => parse_s3(url),
        "cos" => parse_cos(url),
        _ => Err(BlobError::url(
            url,
            format!("unknown scheme `{scheme}`; {FORMS}"),
        )),
    }
}

/// `url` without its query, fragment and user part: safe to show.
pub(crate) fn redact(url: &str) -> String {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    let url = &url[..end];
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let (authority, path) = rest.split_at(authority_end);
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{host}{path}")
        }
        None => url.to_string(),
    }
}

fn parse_file(url: &str) -> Result<Location, BlobError> {
    let root = url.strip_prefix("file://").unwrap_or_default();
    if root.contains(['?', '#']) {
        return Err(BlobError::url(
            url,
            "file:// URLs take no query: file://PATH",
        ));
    }
    let root = root.trim_end_matches('/');
    if root.is_empty() {
        return Err(BlobError::url(url, "no folder: file://PATH"));
    }
    Ok(Location::Fs {
        root: root.to_string(),
    })
}

/// What the `s3` and `cos` forms share: bucket, prefix, query.
struct ObjectUrl {
    bucket: String,
    root: String,
    query: Vec<(String, String)>,
}

impl ObjectUrl {
    fn parse(url: &str, scheme: &str, keys: &[&str]) -> Result<Self, BlobError> {
        let form = if scheme == "cos" {
            "cos://BUCKET-APPID[/PREFIX]?endpoint=URL"
        } else {
            "s3://BUCKET[/PREFIX][?endpoint=URL&region=REGION]"
        };
        let parsed = url::Url::parse(url)
            .map_err(|e| BlobError::url(url, format!("not a URL ({e}): {form}")))?;
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(BlobError::url(url, credentials_hint(scheme)));
        }
        if parsed.fragment().is_some() {
            return Err(BlobError::url(url, format!("no fragment (#...): {form}")));
        }
        if parsed.port().is_some() {
            return Err(BlobError::url(
                url,
                format!("a bucket has no port; give the server as endpoint=URL: {form}"),
            ));
        }
        let bucket = parsed.host_str().unwrap_or_default().to_string();
        if bucket.is_empty() {
            return Err(BlobError::url(url, format!("no bucket: {form}")));
        }
        let prefix = percent_decode_str(parsed.path())
            .decode_utf8()
            .map_err(|_| BlobError::url(url, "the prefix is not UTF-8"))?;
        let prefix = prefix.trim_matches('/');
        let root = if prefix.is_empty() {
            "/".to_string()
        } else {
            format!("/{prefix}/")
        };
        let mut query: Vec<(String, String)> = Vec::new();
        for (key, value) in parsed.query_pairs() {
            if CREDENTIAL_KEYS.contains(&key.as_ref()) {
                return Err(BlobError::url(url, credentials_hint(scheme)));
            }
            if !keys.contains(&key.as_ref()) {
                return Err(BlobError::url(
                    url,
                    format!(
                        "unknown query key `{key}`; {scheme}:// takes {}",
                        keys.join(", ")
                    ),
                ));
            }
            if query.iter().any(|(k, _)| *k == key) {
                return Err(BlobError::url(url, format!("`{key}` is given twice")));
            }
            if value.is_empty() {
                return Err(BlobError::url(url, format!("`{key}` is empty")));
            }
            query.push((key.into_owned(), value.into_owned()));
        }
        Ok(ObjectUrl {
            bucket,
            root,
            query,
        })
    }

    fn take(&mut self, key: &str) -> Option<String> {
        let i = self.query.iter().position(|(k, _)| k == key)?;
        Some(self.query.remove(i).1)
    }
}

fn credentials_hint(scheme: &str) -> String {
    let env = if scheme == "cos" {
        "TENCENTCLOUD_SECRET_ID/TENCENTCLOUD_SECRET_KEY"
    } else {
        "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
    };
    format!(
        "credentials do not belong in the URL (it is shown in logs); \
         set [storage] access_key_id and secret_access_key, or {env}"
    )
}

fn parse_s3(url: &str) -> Result<Location, BlobError> {
    let mut parts = ObjectUrl::parse(url, "s3", S3_KEYS)?;
    let endpoint = parts
        .take("endpoint")
        .map(|e| parse_endpoint(url, &e))
        .transpose()?;
    let region = parts
        .take("region")
        .map(|r| parse_region(url, r))
        .transpose()?;
    let virtual_host_style = match parts.take("virtual_host_style").as_deref() {
        None => endpoint.is_none(),
        Some("true") => true,
        Some("false") => false,
        Some(_) => {
            return Err(BlobError::url(
                url,
                "virtual_host_style is `true` or `false`",
            ))
        }
    };
    Ok(Location::S3(S3Location {
        bucket: parts.bucket,
        root: parts.root,
        endpoint,
        region,
        virtual_host_style,
    }))
}

fn parse_cos(url: &str) -> Result<Location, BlobError> {
    let mut parts = ObjectUrl::parse(url, "cos", COS_KEYS)?;
    let appid_ok = parts.bucket.rsplit_once('-').is_some_and(|(name, id)| {
        !name.is_empty() && !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())
    });
    if !appid_ok {
        return Err(BlobError::url(
            url,
            format!(
                "a COS bucket name ends with the APPID, as in cos://{}-1250000000/...",
                parts.bucket
            ),
        ));
    }
    let endpoint = match (parts.take("endpoint"), parts.take("region")) {
        (Some(endpoint), None) => parse_endpoint(url, &endpoint)?,
        (None, Some(region)) => {
            let region = parse_region(url, region)?;
            format!("https://cos.{region}.myqcloud.com")
        }
        (None, None) => {
            return Err(BlobError::url(
                url,
                "cos:// needs endpoint=https://cos.REGION.myqcloud.com or region=REGION",
            ))
        }
        (Some(_), Some(_)) => {
            return Err(BlobError::url(
                url,
                "give cos:// either endpoint= or region=, not both",
            ))
        }
    };
    Ok(Location::Cos(CosLocation {
        bucket: parts.bucket,
        root: parts.root,
        endpoint,
    }))
}

/// An endpoint is `http(s)://host[:port]`, nothing more.
fn parse_endpoint(url: &str, endpoint: &str) -> Result<String, BlobError> {
    let bad = |why: &str| {
        BlobError::url(
            url,
            format!("endpoint {why}: expected http://HOST[:PORT] or https://HOST[:PORT]"),
        )
    };
    let parsed = url::Url::parse(endpoint).map_err(|_| bad("is not a URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad("is neither http nor https"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad("has a user part"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad("has no host"));
    }
    if parsed.path() != "/" || parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(bad("has a path or query"));
    }
    Ok(parsed.origin().ascii_serialization())
}

fn parse_region(url: &str, region: String) -> Result<String, BlobError> {
    let ok = region
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(region)
    } else {
        Err(BlobError::url(
            url,
            "region is a name such as us-east-1 or ap-guangzhou",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(url: &str) -> String {
        match parse(url) {
            Err(BlobError::UnsupportedUrl { reason, .. }) => reason,
            other => panic!("{url}: expected an UnsupportedUrl error, got {other:?}"),
        }
    }

    fn s3(url: &str) -> S3Location {
        match parse(url) {
            Ok(Location::S3(s3)) => s3,
            other => panic!("{url}: {other:?}"),
        }
    }

    #[test]
    fn file_urls() {
        assert_eq!(
            parse("file://./mongobak-data/blobs/").unwrap(),
            Location::Fs {
                root: "./mongobak-data/blobs".into()
            }
        );
        assert_eq!(
            parse("file:///var/lib/mongobak").unwrap(),
            Location::Fs {
                root: "/var/lib/mongobak".into()
            }
        );
        assert!(reason("file://").contains("no folder"));
        assert!(reason("file:///data?endpoint=x").contains("no query"));
    }

    #[test]
    fn s3_urls() {
        assert_eq!(
            s3("s3://backups/mongobak/prod?endpoint=http://127.0.0.1:9000/&region=us-east-1"),
            S3Location {
                bucket: "backups".into(),
                root: "/mongobak/prod/".into(),
                endpoint: Some("http://127.0.0.1:9000".into()),
                region: Some("us-east-1".into()),
                virtual_host_style: false,
            }
        );
        let aws = s3("s3://backups");
        assert_eq!(aws.root, "/");
        assert_eq!(aws.endpoint, None);
        assert_eq!(aws.region, None);
        assert!(aws.virtual_host_style, "AWS defaults to virtual hosts");
        assert!(
            s3("s3://b/?endpoint=https://minio.internal&virtual_host_style=true")
                .virtual_host_style
        );
        assert!(!s3("s3://b?region=eu-west-1&virtual_host_style=false").virtual_host_style);
        assert_eq!(s3("s3://b/a%20b/c/").root, "/a b/c/");
    }

    #[test]
    fn cos_urls() {
        let Location::Cos(cos) = parse(
            "cos://backups-1250000000/mongobak?endpoint=https://cos.ap-guangzhou.myqcloud.com",
        )
        .unwrap() else {
            panic!("not cos")
        };
        assert_eq!(cos.bucket, "backups-1250000000");
        assert_eq!(cos.root, "/mongobak/");
        assert_eq!(cos.endpoint, "https://cos.ap-guangzhou.myqcloud.com");
        let Location::Cos(cos) = parse("cos://backups-1250000000?region=ap-shanghai").unwrap()
        else {
            panic!("not cos")
        };
        assert_eq!(cos.endpoint, "https://cos.ap-shanghai.myqcloud.com");
        assert_eq!(cos.root, "/");
    }

    #[test]
    fn bad_urls_say_what_to_change() {
        assert!(reason("backups").contains("expected file://PATH"));
        assert!(reason("gs://backups").contains("unknown scheme `gs`"));
        assert!(reason("s3://").contains("no bucket"));
        assert!(reason("s3:///prefix").contains("no bucket"));
        assert!(reason("s3://b:9000/p").contains("endpoint=URL"));
        assert!(reason("s3://b?endpoint=ftp://x").contains("neither http nor https"));
        assert!(reason("s3://b?endpoint=http://h/path").contains("path"));
        assert!(reason("s3://b?endpoint=").contains("`endpoint` is empty"));
        assert!(reason("s3://b?region=a&region=b").contains("given twice"));
        assert!(reason("s3://b?virtual_host_style=yes").contains("`true` or `false`"));
        assert!(reason("s3://b?region=us%20east").contains("region"));
        assert!(reason("cos://backups?region=ap-guangzhou").contains("APPID"));
        assert!(reason("cos://b-125").contains("needs endpoint"));
        assert!(reason("cos://b-125?region=r&endpoint=https://h").contains("not both"));
    }

    #[test]
    fn unknown_query_keys_are_named() {
        let r = reason("s3://b?endpoint=http://h&force_path_style=true");
        assert!(r.contains("unknown query key `force_path_style`"), "{r}");
        assert!(r.contains("endpoint, region, virtual_host_style"), "{r}");
        let r = reason("cos://b-125?region=r&virtual_host_style=true");
        assert!(r.contains("unknown query key `virtual_host_style`"), "{r}");
    }

    #[test]
    fn credentials_in_the_url_are_refused_and_never_shown() {
        for url in [
            "s3://AKIDEXAMPLE:s3cr3t-value@backups/p?region=us-east-1",
            "s3://backups/p?secret_access_key=s3cr3t-value&region=us-east-1",
            "cos://b-125/p?region=r&secret_key=s3cr3t-value",
            "s3://backups/p?region=us-east-1&whatever=s3cr3t-value",
        ] {
            let err = parse(url).unwrap_err();
            for shown in [err.to_string(), format!("{err:?}")] {
                assert!(!shown.contains("s3cr3t-value"), "{shown}");
                assert!(!shown.contains("AKIDEXAMPLE"), "{shown}");
            }
        }
        assert!(reason("s3://k:s@b").contains("credentials do not belong in the URL"));
        assert!(reason("cos://b-1?secret_id=x").contains("TENCENTCLOUD_SECRET_ID"));
    }

    #[test]
    fn redaction() {
        assert_eq!(redact("s3://k:s@b/p?x=y#f"), "s3://b/p");
        assert_eq!(redact("file:///a/b"), "file:///a/b");
        assert_eq!(redact("nonsense?secret"), "nonsense");
    }
}
