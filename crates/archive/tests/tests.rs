//! Integration tests of mongobak-archive, one module per topic.

mod util;

mod gzip;
mod misuse;
mod properties;
mod reader_rules;
mod real_archives;
mod roundtrip;
mod worked_example;
