//! The data set and its archive: about `--gb` GB of BSON in four
//! collections of mixed shapes (the generator of `bench/dump`, seeded, so
//! every run makes the same documents), written once as a gzipped
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
use std::sync::LazyLock;
use std::time::Instant;

use anyhow::Context;
use mongobak_archive::{
    gunzip, metadata_json, ArchiveHeader, ArchiveWriter, GzipWriter, NamespaceKind, NamespaceMeta,
    DEFAULT_LEVEL,
};
use mongodb::bson::{doc, oid::ObjectId, Binary, Bson, DateTime, Document};
use serde::{Deserialize, Serialize};

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

/// Words of the generated text (zstd level 1 compresses it about 3x).
static WORDS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    "backup replica shard cluster oplog segment index cursor document collection database \
     server client driver primary secondary election journal checkpoint cache eviction \
     page tree leaf branch key value range chunk balancer migration write read concern \
     majority timestamp session transaction commit abort retry timeout network socket \
     buffer stream frame header payload order customer invoice product price quantity \
     shipping address street city country payment refund status pending shipped delivered \
     cancelled the a of and to in is for on with as by at from this that it be are was \
     has not but or an will can all new more when which their after before during while \
     under over between through against within without again further then once here there \
     why how only own same so than too very"
        .split_whitespace()
        .collect()
});

const CITIES: &[&str] = &[
    "Lisbon", "Porto", "Madrid", "Lyon", "Berlin", "Hamburg", "Milan", "Turin", "Vienna", "Prague",
    "Warsaw", "Krakow", "Oslo", "Bergen", "Dublin", "Cork",
];

/// SplitMix64: small, fast, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo).max(1)
    }

    fn coin(&mut self) -> bool {
        self.next() >> 63 == 1
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.range(0, items.len() as u64) as usize]
    }

    /// About `len` characters of words from [`WORDS`].
    fn text(&mut self, len: usize) -> String {
        let mut out = String::with_capacity(len + 16);
        while out.len() < len {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(self.pick(&WORDS));
        }
        out
    }

    /// Text of a length uniform in `lo..hi`.
    fn text_between(&mut self, lo: u64, hi: u64) -> String {
        let len = self.range(lo, hi) as usize;
        self.text(len)
    }

    /// Random bytes, a length uniform in `lo..hi`.
    fn bytes_between(&mut self, lo: u64, hi: u64) -> Vec<u8> {
        let len = self.range(lo, hi) as usize;
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(len);
        out
    }

    fn object_id(&mut self, n: u64) -> ObjectId {
        let mut bytes = [0u8; 12];
        bytes[..4].copy_from_slice(&(1_700_000_000 + (n / 1000) as u32).to_be_bytes());
        bytes[4..8].copy_from_slice(&(self.next() as u32).to_be_bytes());
        bytes[8..].copy_from_slice(&(n as u32).to_be_bytes());
        ObjectId::from_bytes(bytes)
    }
}

/// Milliseconds since the epoch of 2024-01-01.
const BASE_MILLIS: i64 = 1_704_067_200_000;

/// Document `n` of collection `name`.
fn generate(name: &str, n: u64, rng: &mut Rng) -> Document {
    let at = DateTime::from_millis(BASE_MILLIS + n as i64 * 1_000 + rng.range(0, 1_000) as i64);
    match name {
        // ~1 KB: nested customer and address, an array of line items.
        "orders" => {
            let items: Vec<Document> = (0..rng.range(2, 8))
                .map(|_| {
                    doc! {
                        "sku": format!("SKU-{:06}", rng.range(0, 200_000)),
                        "name": rng.text(20),
                        "qty": rng.range(1, 10) as i32,
                        "price": (rng.unit() * 50_000.0).round() / 100.0,
                    }
                })
                .collect();
            doc! {
                "_id": rng.object_id(n),
                "customer": {
                    "id": rng.range(0, 1_000_000) as i64,
                    "name": format!("{} {}", rng.pick(&WORDS), rng.pick(&WORDS)),
                    "email": format!("user{}@example.com", rng.range(0, 1_000_000)),
                    "address": {
                        "street": format!("{} {} street", rng.range(1, 300), rng.pick(&WORDS)),
                        "city": rng.pick(CITIES),
                        "zip": format!("{:05}", rng.range(0, 100_000)),
                        "country": "PT",
                    },
                },
                "items": items,
                "total": (rng.unit() * 200_000.0).round() / 100.0,
                "currency": "EUR",
                "status": rng.pick(&["pending", "paid", "shipped", "delivered", "cancelled"]),
                "created": at,
                "tags": [rng.pick(&WORDS), rng.pick(&WORDS)],
                "note": rng.text_between(100, 500),
            }
        }
        // ~2 KB: a random binary payload (incompressible) and typed attributes.
        "events" => {
            let mut attrs = Document::new();
            for i in 0..16 {
                let key = format!("a{i}");
                match i % 4 {
                    0 => attrs.insert(key, rng.range(0, 1 << 30) as i32),
                    1 => attrs.insert(key, rng.unit() * 1e6),
                    2 => attrs.insert(key, rng.pick(&WORDS)),
                    _ => attrs.insert(key, rng.coin()),
                };
            }
            doc! {
                "_id": n as i64,
                "ts": at,
                "kind": rng.pick(&["click", "view", "purchase", "login", "logout", "error"]),
                "source": {
                    "host": format!("web-{:03}", rng.range(0, 64)),
                    "ip": format!("10.{}.{}.{}", rng.range(0, 256), rng.range(0, 256), rng.range(0, 256)),
                    "region": rng.pick(CITIES),
                    "pid": rng.range(1, 65_536) as i32,
                },
                "payload": Binary {
                    subtype: mongodb::bson::spec::BinarySubtype::Generic,
                    bytes: rng.bytes_between(200, 800),
                },
                "attrs": attrs,
                "message": rng.text_between(600, 1_400),
            }
        }
        // ~3 KB: settings nested three levels, an array of history entries.
        "profiles" => {
            let history: Vec<Document> = (0..rng.range(10, 25))
                .map(|i| {
                    doc! {
                        "at": DateTime::from_millis(BASE_MILLIS + i as i64 * 86_400_000),
                        "action": rng.pick(&WORDS),
                        "value": rng.unit() * 1_000.0,
                        "ref": rng.next() as i64,
                    }
                })
                .collect();
            doc! {
                "_id": rng.object_id(n),
                "username": format!("user{n:010}"),
                "created": at,
                "bio": rng.text_between(900, 1_700),
                "settings": {
                    "theme": rng.pick(&["dark", "light", "auto"]),
                    "lang": rng.pick(&["en", "pt", "de", "fr"]),
                    "notifications": {
                        "email": rng.coin(),
                        "sms": rng.coin(),
                        "push": {
                            "enabled": true,
                            "quiet_hours": {"from": rng.range(0, 24) as i32, "to": rng.range(0, 24) as i32},
                        },
                    },
                },
                "history": history,
            }
        }
        // ~4 KB: long log messages and stack frames.
        _ => {
            let stack: Vec<String> = (0..rng.range(5, 15))
                .map(|_| {
                    format!(
                        "at {}::{}::{} ({}.rs:{})",
                        rng.pick(&WORDS),
                        rng.pick(&WORDS),
                        rng.pick(&WORDS),
                        rng.pick(&WORDS),
                        rng.range(1, 2_000)
                    )
                })
                .collect();
            doc! {
                "_id": n as i64,
                "at": at,
                "level": rng.pick(&["DEBUG", "INFO", "INFO", "INFO", "WARN", "ERROR"]),
                "host": format!("app-{:03}", rng.range(0, 32)),
                "msg": rng.text_between(2_200, 3_600),
                "stack": stack,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_is_seeded() {
        let a = generate("orders", 7, &mut Rng(1));
        let b = generate("orders", 7, &mut Rng(1));
        assert_eq!(a, b);
    }

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
