//! [`HashingWriter`]: counts and SHA-256-hashes the bytes that reach a
//! sink, for the checksum of the file a user downloads.

use std::io::{self, Write};

use sha2::{Digest, Sha256};

/// Size and SHA-256 of a byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checksum {
    /// Bytes written.
    pub bytes: u64,
    /// SHA-256 of them.
    pub sha256: [u8; 32],
}

impl Checksum {
    /// The SHA-256 as 64 lowercase hex digits.
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }
}

/// A [`Write`] adapter that hashes and counts exactly the bytes the inner
/// sink accepted. Put it outermost-last, around the final sink:
/// `ArchiveWriter<GzipWriter<HashingWriter<File>>>`.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps a sink.
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.bytes
    }

    /// The sink.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// Returns the sink and the checksum of everything written.
    pub fn finish(self) -> (W, Checksum) {
        let checksum = Checksum {
            bytes: self.bytes,
            sha256: self.hasher.finalize().into(),
        };
        (self.inner, checksum)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_what_was_written() {
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"abc").unwrap();
        let (inner, sum) = w.finish();
        assert_eq!(inner, b"abc");
        assert_eq!(sum.bytes, 3);
        assert_eq!(
            sum.sha256_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn counts_partial_writes_only() {
        struct Two(Vec<u8>);
        impl Write for Two {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                let n = buf.len().min(2);
                self.0.extend_from_slice(&buf[..n]);
                Ok(n)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut w = HashingWriter::new(Two(Vec::new()));
        assert_eq!(w.write(b"hello").unwrap(), 2);
        w.write_all(b"llo").unwrap();
        let (inner, sum) = w.finish();
        assert_eq!(inner.0, b"hello");
        assert_eq!(sum.bytes, 5);
        let mut expected = Sha256::new();
        expected.update(b"hello");
        assert_eq!(sum.sha256, <[u8; 32]>::from(expected.finalize()));
    }
}
