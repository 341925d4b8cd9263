//! Keeping the server's files to its owner.
//!
//! The data folder holds the metadata database (with the instances' URIs
//! and their passwords), the generated keys, backups and download files:
//! nothing another user of the host may read. So the commands that write
//! there set the process's file mode creation mask to `077` before they
//! create anything ([`restrict_new_files`]): every file then starts `0600`
//! and every folder `0700`, whoever creates it (SQLite for its WAL and SHM
//! files, the blob store, temporaries) and whatever umask the process was
//! started with. An install made before, or by hand, is tightened at start
//! ([`tighten`]). A configuration file that holds secrets and that others
//! may read gets a warning ([`exposed_secrets`]).

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;

/// Files and folders the process creates from now on are its owner's only.
pub fn restrict_new_files() {
    // SAFETY: umask only swaps the process's creation mask; it cannot fail
    // and touches no memory.
    unsafe {
        libc::umask(0o077);
    }
}

/// Creates the data folder `0700` (and any missing parent) if it does not
/// exist.
pub fn create_data_dir(path: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .with_context(|| format!("cannot create the data folder {}", path.display()))
}

/// Takes the group's and others' permissions off every file and folder
/// under each of `roots` (the roots included; symbolic links are not
/// followed). Returns how many were changed.
pub fn tighten(roots: &[PathBuf]) -> anyhow::Result<usize> {
    let mut changed = 0;
    for root in roots {
        if std::fs::symlink_metadata(root).is_err() {
            continue;
        }
        for entry in walkdir::WalkDir::new(root) {
            let entry = entry.with_context(|| format!("cannot read under {}", root.display()))?;
            if entry.file_type().is_symlink() {
                continue;
            }
            let metadata = entry
                .metadata()
                .with_context(|| format!("cannot read {}", entry.path().display()))?;
            let mode = metadata.permissions().mode() & 0o7777;
            if mode & 0o077 == 0 {
                continue;
            }
            std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(mode & !0o077))
                .with_context(|| format!("cannot restrict {}", entry.path().display()))?;
            changed += 1;
        }
    }
    Ok(changed)
}

/// What makes the configuration file at `path` worth a warning: it holds
/// secrets (keys, URIs with a password) and the group or others may read
/// it. `None` when it is private or holds none.
pub fn exposed_secrets(path: &Path) -> anyhow::Result<Option<Vec<String>>> {
    let mode = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o044 == 0 {
        return Ok(None);
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    // An unparsable file is refused by the configuration loader itself.
    let Ok(table) = text.parse::<toml::Table>() else {
        return Ok(None);
    };
    let mut found = Vec::new();
    secrets_in(&toml::Value::Table(table), "", &mut found);
    Ok((!found.is_empty()).then_some(found))
}

/// Keys whose value is a secret, whatever it looks like.
const SECRET_KEYS: &[&str] = &[
    "secret_key",
    "secret_access_key",
    "session_token",
    "url_signing_key",
    "url_signing_previous_keys",
];

/// Collects the dotted names of the secrets under `value`.
fn secrets_in(value: &toml::Value, name: &str, found: &mut Vec<String>) {
    match value {
        toml::Value::Table(table) => {
            for (key, value) in table {
                let name = if name.is_empty() {
                    key.clone()
                } else {
                    format!("{name}.{key}")
                };
                if SECRET_KEYS.contains(&key.as_str()) {
                    found.push(name);
                } else {
                    secrets_in(value, &name, found);
                }
            }
        }
        toml::Value::Array(items) => {
            for item in items {
                secrets_in(item, name, found);
            }
        }
        toml::Value::String(text) if has_password(text) => found.push(name.to_string()),
        _ => {}
    }
}

/// Whether `text` is a URI with a password (`scheme://user:password@...`).
fn has_password(text: &str) -> bool {
    let Some((_, rest)) = text.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    authority
        .rsplit_once('@')
        .is_some_and(|(user_info, _)| user_info.contains(':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_uris() {
        assert!(has_password("mongodb://u:p@127.0.0.1:27017/?x=1"));
        assert!(has_password("postgres://mongobak:secret@db/mongobak"));
        assert!(!has_password("mongodb://u@127.0.0.1:27017/"));
        assert!(!has_password("mongodb://127.0.0.1:27017/?authSource=a:b@c"));
        assert!(!has_password("file://./mongobak-data/blobs"));
        assert!(!has_password("a:b@c"));
    }

    #[test]
    fn secrets_are_named_and_only_a_readable_file_warns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mongobak.toml");
        std::fs::write(
            &path,
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[[accounts]]\nuin = \"1\"\nsecret_id = \"AKID\"\n\
             secret_key = \"k\"\n\n[[instances]]\nname = \"a\"\n\
             replica_sets = [\"mongodb://127.0.0.1:1/\", \"mongodb://u:p@127.0.0.1:2/\"]\n",
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(
            exposed_secrets(&path).unwrap(),
            Some(vec![
                "accounts.secret_key".to_string(),
                "instances.replica_sets".to_string()
            ])
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(exposed_secrets(&path).unwrap(), None);

        std::fs::write(&path, "[server]\nlisten = \"127.0.0.1:0\"\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(exposed_secrets(&path).unwrap(), None);
    }

    #[test]
    fn tightening_takes_group_and_other_bits_off() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        std::fs::create_dir_all(root.join("blobs/backups")).unwrap();
        let file = root.join("blobs/backups/segment");
        std::fs::write(&file, b"x").unwrap();
        std::fs::write(root.join("private"), b"x").unwrap();
        for (path, mode) in [
            (&root, 0o755),
            (&root.join("blobs"), 0o775),
            (&root.join("blobs/backups"), 0o755),
            (&file, 0o664),
            (&root.join("private"), 0o600),
        ] {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        std::os::unix::fs::symlink("/etc/hostname", root.join("link")).unwrap();
        assert_eq!(tighten(std::slice::from_ref(&root)).unwrap(), 4);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&root.join("blobs")), 0o700);
        assert_eq!(mode(&root.join("blobs/backups")), 0o700);
        assert_eq!(mode(&file), 0o600);
        assert_eq!(tighten(&[root, dir.path().join("absent")]).unwrap(), 0);
    }
}
