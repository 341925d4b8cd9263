//! The seeded generator of the benchmarks' data set: four collections of
//! mixed shapes (`orders`, `events`, `profiles`, `logs`, documents of about
//! 1, 2, 3 and 4 KB), text made of common words (zstd level 1 stores it in
//! about a third) and an incompressible binary payload in `events`. The
//! same seed gives the same documents on every run.

use std::sync::LazyLock;

use mongodb::bson::{doc, oid::ObjectId, Binary, DateTime, Document};

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
pub struct Rng(pub u64);

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
pub fn generate(name: &str, n: u64, rng: &mut Rng) -> Document {
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
        assert_ne!(a, generate("orders", 7, &mut Rng(2)));
    }
}
