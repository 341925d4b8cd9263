//! The data set and its archive: about `--gb` GB of BSON in four
//! collections of mixed shapes (`bench_support::documents`, the generator
//! `bench/dump` loads too, seeded, so every run makes the same documents),
//! written once as a gzipped
//! mongodump archive with `mongobak_archive`'s `ArchiveWriter` and
//! `GzipWriter::parallel`, as a download task packages a backup
//! (crates/worker/src/downloads.rs): collections one after the other,
//! their `.metadata.json` with the indexes, and an empty oplog last.
//!
//! A small JSON file beside the archive records what it holds, so a kept
//! archive (`--keep-archive`) is reused only when it is the same data.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use mongobak_archive::{
    gunzip, metadata_json, ArchiveHeader, ArchiveWriter, GzipWriter, NamespaceKind, NamespaceMeta,
    DEFAULT_LEVEL,
};
use mongodb::bson::{doc, Bson};
use serde::{Deserialize, Serialize};

use bench_support::documents::{generate, Rng};

use crate::child::ChildReport;

/// The database the archive's collections belong to (and are restored into).
pub const DB: &str = "benchrestore";
/// Bumped whenever the generated data or its indexes change, so a kept
/// archive is written again.
const DATA_VERSION: i32 = 1;
/// The source version the archive's header names.
const SERVER_VERSION: &str = "7.0.14";

/// A secondary index: one field, its direction, whether it is unique.
struct Index {
    field: &'static str,
    direction: i32,
    unique: bool,
}

/// A collection of the data set and its secondary indexes.
struct Collection {
    name: &'static str,
    indexes: &'static [Index],
}

const fn index(field: &'static str, direction: i32, unique: bool) -> Index {
    Index {
        field,
        direction,
        unique,
    }
}

/// The four collections, each a quarter of the data; documents of about
/// 1, 2, 3 and 4 KB (see [`generate`]).
const COLLECTIONS: &[Collection] = &[
    Collection {
        name: "orders",
        indexes: &[index("customer.id", 1, false)],
    },
    Collection {
        name: "events",
        indexes: &[index("ts", 1, false)],
    },
    Collection {
        name: "profiles",
        indexes: &[index("username", 1, true)],
    },
    Collection {
        name: "logs",
        indexes: &[index("host", 1, false), index("at", -1, false)],
    },
];

/// What an archive holds; kept as `<archive>.json` beside it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchiveInfo {
    /// [`DATA_VERSION`] of the generator that wrote it.
    pub version: i32,
    /// `--gb` it was written for.
    pub gb: f64,
    /// BSON bytes of the documents.
    pub bytes: u64,
    /// Documents.
    pub documents: u64,
    /// Collections.
    pub collections: u64,
    /// Secondary indexes (besides `_id`) of all collections.
    pub indexes: u64,
    /// Size of the gzipped archive file.
    pub gz_bytes: u64,
}

/// Where the gzipped archive for `gb` lives in `dir`.
pub fn gz_path(dir: &Path, gb: f64) -> PathBuf {
    dir.join(format!("bench-restore-d{DATA_VERSION}-{gb}gb.archive.gz"))
}

/// Where the plain (not gzipped) copy of `gz` lives.
pub fn plain_path(gz: &Path) -> PathBuf {
    gz.with_extension("")
}

fn info_path(gz: &Path) -> PathBuf {
    suffixed(gz, ".json")
}

/// `path` with `suffix` added to its file name.
fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The archive's record, if `gz` is a complete archive of the same data.
pub fn existing(gz: &Path, gb: f64) -> Option<ArchiveInfo> {
    let text = std::fs::read_to_string(info_path(gz)).ok()?;
    let info: ArchiveInfo = serde_json::from_str(&text).ok()?;
    let size = std::fs::metadata(gz).ok()?.len();
    (info.version == DATA_VERSION && info.gb == gb && info.gz_bytes == size).then_some(info)
}

/// Writes the plain copy of `gz` (a temporary name, then renamed into
/// place, so an existing file is always complete).
pub fn write_plain(gz: &Path) -> anyhow::Result<PathBuf> {
    let plain = plain_path(gz);
    if plain.is_file() {
        return Ok(plain);
    }
    let part = suffixed(&plain, ".part");
    let mut input = gunzip(std::io::BufReader::new(
        File::open(gz).with_context(|| format!("cannot open {}", gz.display()))?,
    ));
    let mut output = BufWriter::new(
        File::create(&part).with_context(|| format!("cannot create {}", part.display()))?,
    );
    std::io::copy(&mut input, &mut output)
        .with_context(|| format!("cannot gunzip {}", gz.display()))?;
    output
        .into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()?;
    std::fs::rename(&part, &plain)?;
    Ok(plain)
}

/// The `.metadata.json` of a collection: no options, the `_id` index and
/// its secondary indexes, as listIndexes reports them.
fn metadata(collection: &str, indexes: &[Index]) -> anyhow::Result<String> {
    let mut specs = vec![Bson::Document(
        doc! {"v": 2, "key": {"_id": 1}, "name": "_id_"},
    )];
    for index in indexes {
        let (field, direction) = (index.field, index.direction);
        let mut spec = doc! {
            "v": 2,
            "key": {field: direction},
            "name": format!("{field}_{direction}"),
        };
        if index.unique {
            spec.insert("unique", true);
        }
        specs.push(Bson::Document(spec));
    }
    let specs: Vec<serde_json::Value> = specs
        .into_iter()
        .map(Bson::into_canonical_extjson)
        .collect();
    Ok(metadata_json(
        collection,
        NamespaceKind::Collection,
        &serde_json::Value::Null,
        &specs,
        None,
    )?)
}

/// Child operation: generates about `gb` GB of BSON and writes it to `gz`
/// (through `<gz>.part`), then the record beside it.
pub fn write_archive(gz: &Path, gb: f64) -> anyhow::Result<ChildReport> {
    let started = Instant::now();
    let part = suffixed(gz, ".part");
    let file = File::create(&part).with_context(|| format!("cannot create {}", part.display()))?;
    // As a download task packages a backup: parallel gzip members at the
    // default level, one worker thread per core.
    let gzip = GzipWriter::parallel(BufWriter::with_capacity(1 << 20, file), DEFAULT_LEVEL, 0);
    let header = ArchiveHeader {
        concurrent_collections: 1,
        server_version: SERVER_VERSION.into(),
        tool_version: "bench-restore".into(),
    };
    let mut archive = ArchiveWriter::new(gzip, header)?;
    for collection in COLLECTIONS {
        archive.add_namespace(NamespaceMeta {
            db: DB.into(),
            collection: collection.name.into(),
            metadata_json: metadata(collection.name, collection.indexes)?,
            kind: NamespaceKind::Collection,
        })?;
    }
    archive.add_namespace(NamespaceMeta::oplog())?;

    let per_collection = (gb * 1e9 / COLLECTIONS.len() as f64) as u64;
    let (mut bytes, mut documents) = (0u64, 0u64);
    let mut buffer = Vec::with_capacity(16 * 1024);
    for (i, collection) in COLLECTIONS.iter().enumerate() {
        let name = collection.name;
        archive.begin_namespace(DB, name)?;
        let mut rng = Rng(0x5eed_0000 + i as u64);
        let (mut written, mut n) = (0u64, 0u64);
        while written < per_collection {
            buffer.clear();
            generate(name, n, &mut rng).to_writer(&mut buffer)?;
            archive.write_document(&buffer)?;
            written += buffer.len() as u64;
            n += 1;
        }
        archive.end_namespace()?;
        eprintln!(
            "archive: {DB}.{name}: {n} documents, {:.0} MB of BSON ({:.0} s)",
            written as f64 / 1e6,
            started.elapsed().as_secs_f64()
        );
        bytes += written;
        documents += n;
    }
    let oplog = NamespaceMeta::oplog();
    archive.begin_namespace(&oplog.db, &oplog.collection)?;
    archive.end_namespace()?;
    let file = archive
        .finish()?
        .finish()?
        .into_inner()
        .map_err(|e| e.into_error())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&part, gz)?;
    let gz_bytes = std::fs::metadata(gz)?.len();
    let info = ArchiveInfo {
        version: DATA_VERSION,
        gb,
        bytes,
        documents,
        collections: COLLECTIONS.len() as u64,
        indexes: COLLECTIONS.iter().map(|c| c.indexes.len() as u64).sum(),
        gz_bytes,
    };
    let mut record = File::create(info_path(gz))?;
    record.write_all(serde_json::to_string_pretty(&info)?.as_bytes())?;
    Ok(ChildReport {
        bytes,
        documents,
        seconds: started.elapsed().as_secs_f64(),
        ..ChildReport::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_names_every_index() {
        let text = metadata("logs", COLLECTIONS[3].indexes).unwrap();
        assert!(text.contains("\"_id_\""), "{text}");
        assert!(text.contains("\"host_1\""), "{text}");
        assert!(text.contains("\"at_-1\""), "{text}");
    }

    #[test]
    fn the_plain_copy_drops_only_the_gz_suffix() {
        let gz = gz_path(Path::new("/x"), 0.1);
        assert_eq!(
            plain_path(&gz),
            Path::new("/x/bench-restore-d1-0.1gb.archive")
        );
    }
}
