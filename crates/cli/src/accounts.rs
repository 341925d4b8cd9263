//! The root account of an install without `[[accounts]]`.
//!
//! On first start mongobak creates one root account and keeps its keys in
//! `<data_dir>/credentials.toml`, readable by the owner only (mode 0600).
//! The secret never goes to the log: the log says where the file is, and
//! `mongobak credentials` prints the keys on request.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use rand::distr::{Alphanumeric, SampleString};
use rand::Rng;
use serde::{Deserialize, Serialize};

use mongobak_api::RootAccount;

use crate::config::Config;

/// Name of the generated keys file inside the data dir.
const FILE_NAME: &str = "credentials.toml";
/// Name of the generated download URL signing key inside the data dir.
const URL_KEY_FILE: &str = "url-signing.key";

#[derive(Debug, Serialize, Deserialize)]
struct StoredAccount {
    app_id: u64,
    uin: String,
    secret_id: String,
    secret_key: String,
}

/// The root accounts in force: the configured ones, or else the generated
/// one (created now if it does not exist yet), with the path of its file.
pub fn root_accounts(config: &Config) -> anyhow::Result<(Vec<RootAccount>, Option<PathBuf>)> {
    if !config.accounts.is_empty() {
        return Ok((config.accounts.clone(), None));
    }
    let path = config.data_dir.join(FILE_NAME);
    let account = if path.exists() {
        read(&path)?
    } else {
        create(&path)?
    };
    Ok((vec![account], Some(path)))
}

/// The key that signs download URLs: the configured one, or else one
/// generated on first start and kept in the data dir (mode 0600).
pub fn url_signing_key(config: &Config) -> anyhow::Result<Vec<u8>> {
    if let Some(key) = &config.downloads.url_signing_key {
        return Ok(key.as_bytes().to_vec());
    }
    let path = config.data_dir.join(URL_KEY_FILE);
    if path.exists() {
        let key = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let key = key.trim();
        if key.len() < 32 {
            anyhow::bail!("{} holds a key shorter than 32 characters", path.display());
        }
        return Ok(key.as_bytes().to_vec());
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create {}", config.data_dir.display()))?;
    let key = Alphanumeric.sample_string(&mut rand::rng(), 48);
    write_private(&path, &format!("{key}\n"))?;
    Ok(key.into_bytes())
}

/// Creates `path` readable by its owner only; never overwrites.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

fn read(path: &Path) -> anyhow::Result<RootAccount> {
    let mode = std::fs::metadata(path)?.permissions().mode();
    if mode & 0o077 != 0 {
        tracing::warn!(path = %path.display(), "the credentials file is readable by others; run chmod 600 on it");
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let stored: StoredAccount = toml::from_str(&text)
        .with_context(|| format!("{} is not a mongobak credentials file", path.display()))?;
    Ok(root(stored))
}

fn create(path: &Path) -> anyhow::Result<RootAccount> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut rng = rand::rng();
    let stored = StoredAccount {
        app_id: rng.random_range(1_250_000_000..1_259_999_999),
        uin: rng
            .random_range(100_000_000_000u64..199_999_999_999)
            .to_string(),
        secret_id: format!("AKID{}", Alphanumeric.sample_string(&mut rng, 32)),
        secret_key: Alphanumeric.sample_string(&mut rng, 32),
    };
    let text = format!(
        "# The root account of this mongobak install, created on first start.\n\
         # Keep this file secret: these keys control every backup.\n{}",
        toml::to_string(&stored).expect("the account serializes")
    );
    write_private(path, &text)?;
    Ok(root(stored))
}

fn root(stored: StoredAccount) -> RootAccount {
    RootAccount {
        app_id: Some(stored.app_id),
        uin: stored.uin,
        secret_id: stored.secret_id,
        secret_key: stored.secret_key,
        disabled: false,
        sub_accounts: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d").join(FILE_NAME);
        let first = create(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(first.secret_id.starts_with("AKID") && first.secret_id.len() == 36);
        assert_eq!(read(&path).unwrap(), first);
        assert!(
            create(&path).is_err(),
            "an existing file is never overwritten"
        );
    }
}
