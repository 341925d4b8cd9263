//! The source's data set: database `benchscale`, `--collections`
//! collections of about 1 KB documents (nested customer, an array of line
//! items, a text of common words, a short random binary payload, a date),
//! `--mb` MB of BSON in all, split evenly, each with one secondary index.
//! The generator is seeded, so every run loads the same documents; the mix
//! of text and random bytes makes gzip work as it does on ordinary data.

use std::time::Instant;

use anyhow::Context;
use mongodb::bson::{doc, spec::BinarySubtype, Binary, DateTime, Document};
use mongodb::{Client, IndexModel};

/// The database the data set lives in.
pub const DATABASE: &str = "benchscale";
/// BSON bytes per `insert_many`.
const BATCH_BYTES: usize = 2 << 20;

const WORDS: [&str; 48] = [
    "order",
    "customer",
    "shipping",
    "address",
    "payment",
    "invoice",
    "status",
    "pending",
    "delivered",
    "warehouse",
    "product",
    "quantity",
    "price",
    "discount",
    "total",
    "account",
    "session",
    "device",
    "mobile",
    "browser",
    "region",
    "north",
    "south",
    "east",
    "west",
    "express",
    "standard",
    "return",
    "refund",
    "review",
    "rating",
    "comment",
    "support",
    "ticket",
    "priority",
    "urgent",
    "normal",
    "low",
    "city",
    "street",
    "garden",
    "river",
    "market",
    "station",
    "center",
    "blue",
    "green",
    "red",
];

/// What was loaded.
pub struct Loaded {
    /// Documents inserted.
    pub documents: u64,
    /// Their BSON bytes.
    pub bytes: u64,
    /// Seconds the load took.
    pub seconds: f64,
}

/// xorshift64*: fast, seeded, good enough for test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn words(&mut self, n: u64) -> String {
        let mut text = String::new();
        for i in 0..n {
            if i > 0 {
                text.push(' ');
            }
            text.push_str(WORDS[self.below(WORDS.len() as u64) as usize]);
        }
        text
    }
}

fn document(rng: &mut Rng, n: i64) -> Document {
    let items: Vec<Document> = (0..1 + rng.below(5))
        .map(|_| {
            doc! {
                "sku": format!("sku-{:06}", rng.below(100_000)),
                "qty": rng.below(10) as i64 + 1,
                "price": rng.below(100_000) as f64 / 100.0,
                "label": rng.words(3),
            }
        })
        .collect();
    let payload: Vec<u8> = (0..64 + rng.below(192)).map(|_| rng.next() as u8).collect();
    let note_words = 20 + rng.below(60);
    doc! {
        "_id": n,
        "customer": {
            "id": rng.below(50_000) as i64,
            "name": rng.words(2),
            "city": rng.words(1),
            "vip": rng.below(10) == 0,
        },
        "items": items,
        "note": rng.words(note_words),
        "payload": Binary { subtype: BinarySubtype::Generic, bytes: payload },
        "at": DateTime::from_millis(1_700_000_000_000 + n * 1_000),
    }
}

/// Loads the data set into the server of `client`: `mb` MB (10^6 bytes) of
/// BSON over `collections` collections, one at a time.
pub async fn load(client: &Client, mb: f64, collections: usize) -> anyhow::Result<Loaded> {
    let started = Instant::now();
    let database = client.database(DATABASE);
    let per_collection = (mb * 1e6 / collections as f64) as u64;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut documents, mut bytes) = (0_u64, 0_u64);
    for c in 0..collections {
        let name = format!("c{c}");
        let collection = database.collection::<Document>(&name);
        let mut written = 0_u64;
        let mut n = 0_i64;
        while written < per_collection {
            let mut batch = Vec::new();
            let mut batch_bytes = 0;
            while batch_bytes < BATCH_BYTES && written + (batch_bytes as u64) < per_collection {
                let doc = document(&mut rng, n);
                n += 1;
                batch_bytes += mongodb::bson::to_vec(&doc)?.len();
                batch.push(doc);
            }
            documents += batch.len() as u64;
            written += batch_bytes as u64;
            collection
                .insert_many(batch)
                .await
                .with_context(|| format!("inserting into {DATABASE}.{name}"))?;
        }
        collection
            .create_index(IndexModel::builder().keys(doc! {"customer.id": 1}).build())
            .await
            .with_context(|| format!("indexing {DATABASE}.{name}"))?;
        bytes += written;
    }
    Ok(Loaded {
        documents,
        bytes,
        seconds: started.elapsed().as_secs_f64(),
    })
}
