//! `--archive --gzip`: the whole stream through gzip, read back with a
//! plain multi-member decoder as Go's compress/gzip would.

use std::io::{Read, Write};

use flate2::read::MultiGzDecoder;
use mongobak_archive::{gunzip, ArchiveReader, GzipWriter, DEFAULT_LEVEL};

use crate::util::testdata;

fn gzip_members(data: &[u8], threads: usize, member_size: usize) -> Vec<u8> {
    let mut w = GzipWriter::members(Vec::new(), DEFAULT_LEVEL, threads, member_size);
    for chunk in data.chunks(1000) {
        w.write_all(chunk).unwrap();
    }
    w.finish().unwrap()
}

/// Offsets of the gzip member headers, found by decoding member by member.
fn member_count(gz: &[u8]) -> usize {
    let mut rest = gz;
    let mut members = 0;
    while !rest.is_empty() {
        let mut decoder = flate2::bufread::GzDecoder::new(rest);
        std::io::copy(&mut decoder, &mut std::io::sink()).unwrap();
        rest = decoder.into_inner();
        members += 1;
    }
    members
}

#[test]
fn concatenated_members_read_with_a_plain_decoder() {
    let archive = gunzip_file("synthetic/whole-stream-gzip.agz");
    let gz = gzip_members(&archive, 2, 256 * 1024);
    assert_eq!(member_count(&gz), archive.len().div_ceil(256 * 1024));
    let mut back = Vec::new();
    MultiGzDecoder::new(&gz[..]).read_to_end(&mut back).unwrap();
    assert_eq!(back, archive);
    let summary = ArchiveReader::verify(MultiGzDecoder::new(&gz[..])).unwrap();
    assert_eq!(summary.namespaces[0].documents, 20_000);
}

#[test]
fn single_member_like_mongodump() {
    let archive = testdata("synthetic/users-and-roles.archive");
    let mut w = GzipWriter::new(Vec::new(), DEFAULT_LEVEL);
    w.write_all(&archive).unwrap();
    let gz = w.finish().unwrap();
    assert_eq!(member_count(&gz), 1);
    assert_eq!(&gz[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
    let summary = ArchiveReader::verify(gunzip(&gz[..])).unwrap();
    assert_eq!(summary.namespaces.len(), 4);
}

#[test]
fn parallel_output_does_not_depend_on_threads() {
    let archive = gunzip_file("synthetic/whole-stream-gzip.agz");
    let one = gzip_members(&archive, 1, 128 * 1024);
    let two = gzip_members(&archive, 2, 128 * 1024);
    let four = gzip_members(&archive, 4, 128 * 1024);
    assert_eq!(one, two);
    assert_eq!(one, four);
}

#[test]
fn truncated_gzip_fails() {
    let gz = testdata("synthetic/whole-stream-gzip.agz");
    for cut in [10, gz.len() / 2, gz.len() - 4] {
        assert!(
            ArchiveReader::verify(gunzip(&gz[..cut])).is_err(),
            "cut at {cut} accepted"
        );
    }
}

fn gunzip_file(path: &str) -> Vec<u8> {
    let mut out = Vec::new();
    gunzip(&testdata(path)[..]).read_to_end(&mut out).unwrap();
    out
}
