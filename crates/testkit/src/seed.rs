//! A data set that exercises everything a backup must keep.

use mongodb::bson::oid::ObjectId;
use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{
    doc, Binary, Bson, DateTime, Decimal128, Document, JavaScriptCodeWithScope, RawDocumentBuf,
    Regex, Timestamp,
};
use mongodb::options::{IndexOptions, TimeseriesOptions};
use mongodb::{Client, IndexModel};

/// Documents in `crm.contacts`, enough for several batches.
pub const CONTACTS: i64 = 3000;
/// Size of the string in the document near the 16 MiB limit.
pub const BIG_STRING: usize = 16 * 1024 * 1024 - 1024;

/// One value of every BSON type the driver can build.
pub fn every_type() -> Vec<(&'static str, Bson)> {
    vec![
        ("double", Bson::Double(3.25)),
        ("double_nan", Bson::Double(f64::NAN)),
        ("double_neg_zero", Bson::Double(-0.0)),
        ("string", Bson::String("héllo wörld ✓".into())),
        (
            "document",
            Bson::Document(doc! {"a": 1, "b": {"c": [1, 2]}}),
        ),
        (
            "array",
            Bson::Array(vec![Bson::Int32(1), Bson::String("two".into()), Bson::Null]),
        ),
        (
            "binary_generic",
            Bson::Binary(Binary {
                subtype: BinarySubtype::Generic,
                bytes: vec![0, 1, 2, 255],
            }),
        ),
        (
            "binary_uuid",
            Bson::Binary(Binary {
                subtype: BinarySubtype::Uuid,
                bytes: (0u8..16).collect(),
            }),
        ),
        (
            "binary_user",
            Bson::Binary(Binary {
                subtype: BinarySubtype::UserDefined(0x80),
                bytes: vec![9; 5],
            }),
        ),
        ("undefined", Bson::Undefined),
        (
            "object_id",
            Bson::ObjectId(ObjectId::parse_str("5f1b2c3d4e5f60718293a4b5").unwrap()),
        ),
        ("boolean", Bson::Boolean(true)),
        (
            "datetime",
            Bson::DateTime(DateTime::from_millis(1_700_000_000_123)),
        ),
        (
            "datetime_pre_epoch",
            Bson::DateTime(DateTime::from_millis(-86_400_000)),
        ),
        ("null", Bson::Null),
        (
            "regex",
            Bson::RegularExpression(Regex {
                pattern: "^ab+c".into(),
                options: "im".into(),
            }),
        ),
        (
            "javascript",
            Bson::JavaScriptCode("function () { return 1; }".into()),
        ),
        ("symbol", Bson::Symbol("sym".into())),
        (
            "javascript_with_scope",
            Bson::JavaScriptCodeWithScope(JavaScriptCodeWithScope {
                code: "x + 1".into(),
                scope: doc! {"x": 1},
            }),
        ),
        ("int32", Bson::Int32(-42)),
        (
            "timestamp",
            Bson::Timestamp(Timestamp {
                time: 1_700_000_000,
                increment: 7,
            }),
        ),
        ("int64", Bson::Int64(i64::MAX)),
        (
            "decimal128",
            Bson::Decimal128("1234.5678".parse::<Decimal128>().unwrap()),
        ),
        ("min_key", Bson::MinKey),
        ("max_key", Bson::MaxKey),
    ]
}

/// A document holding a DBPointer, a type the driver cannot build, from
/// raw bytes.
fn db_pointer_document() -> RawDocumentBuf {
    let mut body = Vec::new();
    body.push(0x02);
    body.extend_from_slice(b"_id\0");
    body.extend_from_slice(&11i32.to_le_bytes());
    body.extend_from_slice(b"db_pointer\0");
    body.push(0x0C);
    body.extend_from_slice(b"v\0");
    body.extend_from_slice(&6i32.to_le_bytes());
    body.extend_from_slice(b"other\0");
    body.extend_from_slice(&[
        0x5f, 0x1b, 0x2c, 0x3d, 0x4e, 0x5f, 0x60, 0x71, 0x82, 0x93, 0xa4, 0xb5,
    ]);
    body.push(0);
    let mut bytes = ((body.len() + 4) as i32).to_le_bytes().to_vec();
    bytes.extend_from_slice(&body);
    RawDocumentBuf::from_bytes(bytes).expect("a well-formed DBPointer document")
}

/// Fills the server with the data set. Namespaces:
/// `shop.everything`, `shop.items` (+ the view `shop.cheap`), `shop.capped`,
/// `shop.valid`, `shop.empty`, `shop.big`, `shop.café.menü`,
/// `shop.collated`, `shop.clustered`, `shop.metrics` (time series options),
/// `crm.contacts`, and the user `admin.backup-tester`.
pub async fn seed(client: &Client) -> mongodb::error::Result<()> {
    let shop = client.database("shop");

    let everything = shop.collection::<Document>("everything");
    let mut all = Document::new();
    for (name, value) in every_type() {
        everything
            .insert_one(doc! {"_id": name, "v": value.clone()})
            .await?;
        all.insert(name, value);
    }
    everything
        .insert_one(doc! {"_id": "all", "nested": {"deeper": all.clone()}, "list": [all]})
        .await?;
    shop.collection::<RawDocumentBuf>("everything")
        .insert_one(db_pointer_document())
        .await?;

    let items = shop.collection::<Document>("items");
    let day_ahead = DateTime::from_millis(DateTime::now().timestamp_millis() + 86_400_000);
    let docs: Vec<Document> = (0..200)
        .map(|i| {
            let mut d = doc! {"_id": i, "sku": format!("SKU-{i:04}"), "cat": i % 7, "price": (i % 50) as f64 * 1.5, "created": day_ahead};
            if i % 3 == 0 {
                d.insert("opt", i);
            }
            d
        })
        .collect();
    items.insert_many(docs).await?;
    let index = |keys: Document, options: IndexOptions| {
        IndexModel::builder().keys(keys).options(options).build()
    };
    items
        .create_indexes([
            index(
                doc! {"cat": 1, "price": -1},
                IndexOptions::builder()
                    .name("cat_price".to_string())
                    .build(),
            ),
            index(
                doc! {"sku": 1},
                IndexOptions::builder()
                    .name("sku_unique".to_string())
                    .unique(true)
                    .build(),
            ),
            index(
                doc! {"price": 1},
                IndexOptions::builder()
                    .name("price_partial".to_string())
                    .partial_filter_expression(doc! {"price": {"$gt": 10.0}})
                    .build(),
            ),
            index(
                doc! {"created": 1},
                IndexOptions::builder()
                    .name("created_ttl".to_string())
                    .expire_after(std::time::Duration::from_secs(3600))
                    .build(),
            ),
            index(
                doc! {"opt": 1},
                IndexOptions::builder()
                    .name("opt_sparse".to_string())
                    .sparse(true)
                    .build(),
            ),
        ])
        .await?;
    shop.run_command(doc! {"create": "cheap", "viewOn": "items", "pipeline": [{"$match": {"price": {"$lt": 5.0}}}]})
        .await?;

    shop.run_command(doc! {"create": "capped", "capped": true, "size": 1i64 << 20, "max": 50i64})
        .await?;
    let capped = shop.collection::<Document>("capped");
    for i in 0..60 {
        capped.insert_one(doc! {"_id": i, "n": i}).await?;
    }

    shop.run_command(doc! {
        "create": "valid",
        "validator": {"$jsonSchema": {"bsonType": "object", "required": ["qty"], "properties": {"qty": {"bsonType": "int"}}}},
        "validationLevel": "strict",
        "validationAction": "error",
    })
    .await?;
    shop.collection::<Document>("valid")
        .insert_one(doc! {"qty": 3})
        .await?;

    shop.run_command(doc! {"create": "empty"}).await?;

    shop.collection::<Document>("big")
        .insert_one(doc! {"_id": 1, "payload": "b".repeat(BIG_STRING)})
        .await?;

    let unicode = shop.collection::<Document>("café.menü");
    unicode
        .insert_many([
            doc! {"_id": 1, "plat": "crème brûlée"},
            doc! {"_id": 2, "plat": "茶"},
        ])
        .await?;

    shop.run_command(doc! {"create": "collated", "collation": {"locale": "fr", "strength": 2}})
        .await?;
    shop.collection::<Document>("collated")
        .insert_one(doc! {"name": "Élodie"})
        .await?;

    shop.run_command(
        doc! {"create": "clustered", "clusteredIndex": {"key": {"_id": 1}, "unique": true}},
    )
    .await?;
    shop.collection::<Document>("clustered")
        .insert_one(doc! {"_id": 10, "x": 1})
        .await?;

    shop.create_collection("metrics")
        .timeseries(
            TimeseriesOptions::builder()
                .time_field("t".to_string())
                .meta_field(Some("m".to_string()))
                .build(),
        )
        .await?;
    shop.collection::<Document>("metrics")
        .insert_one(doc! {"t": DateTime::from_millis(1_700_000_000_000), "m": "cpu", "v": 0.5})
        .await?;

    let contacts = client.database("crm").collection::<Document>("contacts");
    let batch: Vec<Document> = (0..CONTACTS)
        .map(
            |i| doc! {"_id": i, "name": format!("contact {i}"), "tags": ["a", "b"], "score": i * 3},
        )
        .collect();
    contacts.insert_many(batch).await?;

    client
        .database("admin")
        .run_command(doc! {"createUser": "backup-tester", "pwd": "not-a-secret", "roles": []})
        .await?;
    Ok(())
}
