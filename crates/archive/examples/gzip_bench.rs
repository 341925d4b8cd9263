//! Measures gzip of a mongodump archive: one member on the calling thread
//! against members compressed on worker threads.
//!
//! ```text
//! cargo run --release -p mongobak-archive --example gzip_bench -- [MB] [LEVEL]
//! ```
//!
//! The data are BSON documents shaped like an application collection
//! (ObjectId, amounts, dates, ids from a small set, words), generated before
//! the clock starts; the archive goes to a discarding, hashing sink. Each
//! mode runs three times, interleaved; the best time is reported.

use std::io::Write;
use std::time::{Duration, Instant};

use mongobak_archive::{
    ArchiveHeader, ArchiveWriter, GzipWriter, HashingWriter, NamespaceKind, NamespaceMeta,
};
use mongodb::bson::{oid::ObjectId, rawdoc, DateTime};

const WORDS: [&str; 32] = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
    "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango",
    "uniform", "victor", "whiskey", "xray", "yankee", "zulu", "payment", "refund", "order",
    "customer", "invoice", "shipping",
];

type MakeWriter = Box<dyn Fn() -> GzipWriter<HashingWriter<std::io::Sink>>>;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn documents(total_bytes: usize) -> Vec<Vec<u8>> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut docs = Vec::new();
    let mut bytes = 0;
    let start_ms = 1_700_000_000_000_i64;
    let mut i: i64 = 0;
    while bytes < total_bytes {
        let r = rng.next();
        let mut oid = [0_u8; 12];
        oid[..4].copy_from_slice(&((1_700_000_000 + i / 50) as u32).to_be_bytes());
        oid[4..12].copy_from_slice(&rng.next().to_le_bytes());
        let words = 4 + (r % 12) as usize;
        let note: Vec<&str> = (0..words)
            .map(|_| WORDS[(rng.next() % WORDS.len() as u64) as usize])
            .collect();
        let status = ["paid", "pending", "failed", "refunded"][(r >> 20) as usize % 4];
        let doc = rawdoc! {
            "_id": ObjectId::from_bytes(oid),
            "amount": (r % 1_000_000) as i64,
            "currency": if r % 7 == 0 { "EUR" } else { "USD" },
            "createdAt": DateTime::from_millis(start_ms + i * 37 + (r % 1000) as i64),
            "merchantId": format!("m-{:05}", rng.next() % 5000),
            "status": status,
            "note": note.join(" "),
            "items": (r >> 32) as i32 % 9,
        };
        bytes += doc.as_bytes().len();
        docs.push(doc.into_bytes());
        i += 1;
    }
    docs
}

fn write_archive<W: Write>(sink: W, docs: &[Vec<u8>]) -> W {
    let header = ArchiveHeader {
        concurrent_collections: 1,
        server_version: "7.0.14".into(),
        tool_version: "gzip_bench".into(),
    };
    let mut w = ArchiveWriter::new(sink, header).expect("header");
    w.add_namespace(NamespaceMeta {
        db: "bench".into(),
        collection: "payments".into(),
        metadata_json: String::new(),
        kind: NamespaceKind::Collection,
    })
    .expect("prelude");
    w.begin_namespace("bench", "payments").expect("begin");
    for doc in docs {
        w.write_document(doc).expect("document");
    }
    w.end_namespace().expect("end");
    w.finish().expect("finish")
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mb: usize = args.next().map_or(200, |a| a.parse().expect("MB"));
    let level: u32 = args.next().map_or(6, |a| a.parse().expect("LEVEL"));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

    let t = Instant::now();
    let docs = documents(mb << 20);
    let raw: usize = docs.iter().map(Vec::len).sum();
    println!(
        "{} documents, {:.1} MB of BSON, generated in {:.1?}; level {level}, {cores} cores",
        docs.len(),
        raw as f64 / 1e6,
        t.elapsed()
    );

    let modes: Vec<(String, MakeWriter)> = vec![
        (
            "one member, calling thread".into(),
            Box::new(move || GzipWriter::new(HashingWriter::new(std::io::sink()), level)),
        ),
        (
            "1 MiB members, 1 thread".into(),
            Box::new(move || GzipWriter::parallel(HashingWriter::new(std::io::sink()), level, 1)),
        ),
        (
            "1 MiB members, 2 threads".into(),
            Box::new(move || GzipWriter::parallel(HashingWriter::new(std::io::sink()), level, 2)),
        ),
        (
            format!("1 MiB members, {cores} threads (all cores)"),
            Box::new(move || GzipWriter::parallel(HashingWriter::new(std::io::sink()), level, 0)),
        ),
    ];
    // Best of three rounds, modes interleaved, to damp other load.
    let mut best = vec![(Duration::MAX, Duration::MAX, 0_u64); modes.len()];
    for _ in 0..3 {
        for ((_, make), best) in modes.iter().zip(&mut best) {
            let (t, cpu) = (Instant::now(), cpu_time());
            let gz = write_archive(make(), &docs);
            let (_, checksum) = gz.finish().expect("gzip").finish();
            let cpu = cpu_time().saturating_sub(cpu);
            *best = (best.0.min(t.elapsed()), best.1.min(cpu), checksum.bytes);
        }
    }
    for ((name, _), (elapsed, cpu, compressed)) in modes.iter().zip(best) {
        report(name, raw, compressed, elapsed, cpu);
    }
}

fn report(name: &str, raw: usize, compressed: u64, elapsed: Duration, cpu: Duration) {
    println!(
        "{name:<40} {:>6.1} MB/s  {:>6.1} MB out  ratio {:.3}  wall {:>6.2?}  cpu {:>6.2?}",
        raw as f64 / 1e6 / elapsed.as_secs_f64(),
        compressed as f64 / 1e6,
        compressed as f64 / raw as f64,
        elapsed,
        cpu
    );
}

/// User + system CPU time of the process (all threads), from
/// `/proc/self/stat` at 100 ticks a second; zero where it is missing.
fn cpu_time() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // Fields after the parenthesised command: utime and stime are 14 and 15.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u64 = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}
