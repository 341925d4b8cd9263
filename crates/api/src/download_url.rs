//! Signed, expiring download URLs.
//!
//! `GET <public_url>/download/<task id>/<file name>?expires=<unix s>&signature=<hex>`
//! where the signature is HMAC-SHA256 over `<task id>/<file name>\n<expires>`
//! under the node's URL signing key. Any node with the same key can check a
//! URL without asking anyone; a changed path, a later expiry or another key
//! fails the check. Comparison is in constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::signature::signatures_match;

/// Signs and checks download URLs.
///
/// URLs are signed with the current key; previous keys still verify, so a
/// key can be rotated without breaking URLs handed out before.
#[derive(Clone)]
pub struct UrlSigner {
    key: Vec<u8>,
    previous: Vec<Vec<u8>>,
}

impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UrlSigner { keys: <secret> }")
    }
}

impl UrlSigner {
    /// A signer with `key` (at least 16 bytes of secret).
    pub fn new(key: impl Into<Vec<u8>>) -> Self {
        UrlSigner {
            key: key.into(),
            previous: Vec::new(),
        }
    }

    /// Also accepts URLs signed with `previous` keys (after a rotation).
    pub fn with_previous_keys(mut self, previous: Vec<Vec<u8>>) -> Self {
        self.previous = previous;
        self
    }

    /// The URL of a task's file under `public_url`, valid until `expires`.
    pub fn url(&self, public_url: &str, task_id: i64, file_name: &str, expires: i64) -> String {
        format!(
            "{}/download/{task_id}/{file_name}?expires={expires}&signature={}",
            public_url.trim_end_matches('/'),
            mac(&self.key, task_id, file_name, expires)
        )
    }

    /// Whether `signature` is this signer's (current or a previous key) for
    /// the task, file and expiry.
    pub fn verify(&self, task_id: i64, file_name: &str, expires: i64, signature: &str) -> bool {
        std::iter::once(&self.key)
            .chain(&self.previous)
            .any(|key| signatures_match(&mac(key, task_id, file_name, expires), signature))
    }
}

fn mac(key: &[u8], task_id: i64, file_name: &str, expires: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(format!("{task_id}/{file_name}\n{expires}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_verify_only_unchanged() {
        let signer = UrlSigner::new(b"0123456789abcdef".to_vec());
        let url = signer.url("http://127.0.0.1:9000/", 7, "f.archive.gz", 1_800_000_000);
        let (path, query) = url.split_once('?').unwrap();
        assert_eq!(path, "http://127.0.0.1:9000/download/7/f.archive.gz");
        let signature = query.split("signature=").nth(1).unwrap();
        assert!(signer.verify(7, "f.archive.gz", 1_800_000_000, signature));
        assert!(!signer.verify(8, "f.archive.gz", 1_800_000_000, signature));
        assert!(!signer.verify(7, "g.archive.gz", 1_800_000_000, signature));
        assert!(!signer.verify(7, "f.archive.gz", 1_800_000_001, signature));
        assert!(!UrlSigner::new(b"another key 1234".to_vec()).verify(
            7,
            "f.archive.gz",
            1_800_000_000,
            signature
        ));
        assert!(!format!("{signer:?}").contains("0123"));
        // After a rotation, URLs of the old key still verify.
        let rotated = UrlSigner::new(b"the new key 5678".to_vec())
            .with_previous_keys(vec![b"0123456789abcdef".to_vec()]);
        assert!(rotated.verify(7, "f.archive.gz", 1_800_000_000, signature));
        let fresh = rotated.url("http://h", 7, "f.archive.gz", 1_800_000_000);
        assert_ne!(fresh.split("signature=").nth(1).unwrap(), signature);
    }
}
