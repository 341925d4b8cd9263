"""A strict reader of mongodump archives, independent of mongobak's own.

It applies the reader rules of mongorestore (docs/archive-format.md
§1) to the form current mongodump writes (collection metadata with its
`type` field): the magic number, the header document, the prelude of
collection metadata, blocks of a namespace header, data documents and a
terminator, one EOF header per namespace with the CRC-64/XZ of its
documents, the oplog last, and nothing after the last terminator. `read_archive` raises `ArchiveError` on
the first violation and otherwise returns what the archive holds.
"""

import gzip
import struct
from dataclasses import dataclass, field
from typing import Dict, List

import bson
from bson.int64 import Int64

MAGIC = 0x8199E26D
TERMINATOR = b"\xff\xff\xff\xff"
MAX_DOCUMENT = 16 * 1024 * 1024
OPLOG = ".oplog"

_CRC64_XZ_POLY = 0xC96C5795D7870F42  # reflected ECMA-182
_MASK64 = (1 << 64) - 1


def _crc64_table():
    table = []
    for n in range(256):
        crc = n
        for _ in range(8):
            crc = (crc >> 1) ^ _CRC64_XZ_POLY if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc64_table()


def crc64_xz(data: bytes, crc: int = 0) -> int:
    """CRC-64/XZ (Go's hash/crc64 with the ECMA table); `crc` continues a
    previous value."""
    crc ^= _MASK64
    table = _TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ _MASK64


class ArchiveError(Exception):
    """The bytes are not an archive mongorestore would accept."""


@dataclass
class Archive:
    """What an archive holds."""

    header: dict
    # Collection metadata documents of the prelude, in order.
    prelude: List[dict]
    # Raw data documents of each namespace (`db.collection`; `.oplog` for
    # the oplog), in stream order.
    documents: Dict[str, List[bytes]] = field(default_factory=dict)
    # Namespaces in the order their EOF headers came.
    finished: List[str] = field(default_factory=list)


class _Input:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def at_end(self) -> bool:
        return self.pos == len(self.data)

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise ArchiveError(f"truncated at offset {self.pos}: {what} needs {n} bytes")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def item(self, what: str):
        """A terminator (None) or a raw BSON document."""
        start = self.pos
        head = self.take(4, what)
        if head == TERMINATOR:
            return None
        (length,) = struct.unpack("<i", head)
        if not 5 <= length <= MAX_DOCUMENT:
            raise ArchiveError(f"corruption at offset {start}: document length {length}")
        raw = head + self.take(length - 4, what)
        if raw[-1] != 0:
            raise ArchiveError(f"corruption at offset {start}: document does not end with 0x00")
        return raw


def _fields(raw: bytes) -> dict:
    try:
        return bson.decode(raw)
    except Exception as exc:  # noqa: BLE001 - any decoding failure is corruption
        raise ArchiveError(f"invalid BSON document: {exc}") from None


def _expect_types(doc: dict, spec, what: str) -> None:
    names = [name for name, _ in spec]
    if list(doc) != names:
        raise ArchiveError(f"{what}: fields {list(doc)}, expected {names} in that order")
    for name, kind in spec:
        value = doc[name]
        # bool is an int in Python, and Int64 an int: compare exactly.
        if type(value) is not kind:
            raise ArchiveError(f"{what}: {name} is {type(value).__name__}, expected {kind.__name__}")


def read_archive(data: bytes) -> Archive:
    """Parses a whole (uncompressed) archive."""
    src = _Input(data)
    (magic,) = struct.unpack("<I", src.take(4, "magic"))
    if magic != MAGIC:
        raise ArchiveError(f"magic {magic:#010x}, expected {MAGIC:#010x}")

    raw = src.item("header")
    if raw is None:
        raise ArchiveError("a terminator where the header document belongs")
    header = _fields(raw)
    _expect_types(
        header,
        [("concurrent_collections", int), ("version", str), ("server_version", str), ("tool_version", str)],
        "header",
    )
    if header["version"] != "0.1":
        raise ArchiveError(f"archive version {header['version']!r}")
    version = header["server_version"].split("-", 1)[0].split("+", 1)[0].split(".")
    if len(version) != 3 or not all(part.isdigit() for part in version):
        raise ArchiveError(f"server_version {header['server_version']!r} is not N.N.N")

    prelude = []
    while (raw := src.item("prelude")) is not None:
        meta = _fields(raw)
        _expect_types(
            meta,
            [("db", str), ("collection", str), ("metadata", str), ("size", int), ("type", str)],
            "collection metadata",
        )
        prelude.append(meta)
    archive = Archive(header=header, prelude=prelude)

    declared = set()
    for meta in prelude:
        ns = f"{meta['db']}.{meta['collection']}"
        if ns in declared:
            raise ArchiveError(f"{ns} is declared twice")
        declared.add(ns)
        if meta["type"] == "timeseries":
            # Data of a time series travels under system.buckets (source < 8.3).
            declared.add(f"{meta['db']}.system.buckets.{meta['collection']}")
    crcs: Dict[str, int] = {}
    while not src.at_end():
        raw = src.item("namespace header")
        if raw is None:
            raise ArchiveError("consecutive terminators: a block without a header")
        ns_header = _fields(raw)
        _expect_types(ns_header, [("db", str), ("collection", str), ("EOF", bool), ("CRC", Int64)],
                      "namespace header")
        ns = f"{ns_header['db']}.{ns_header['collection']}"
        if not ns_header["collection"]:
            raise ArchiveError("a namespace header with an empty collection")
        if ns not in declared:
            raise ArchiveError(f"{ns} is not declared in the prelude")
        if ns in archive.finished:
            raise ArchiveError(f"{ns} continues after its EOF header")
        if OPLOG in archive.documents and ns != OPLOG:
            raise ArchiveError(f"{ns} comes after the oplog")
        if ns_header["EOF"]:
            if src.item("EOF terminator") is not None:
                raise ArchiveError(f"{ns}: a document after its EOF header")
            expected = crcs.get(ns, 0)
            if int(ns_header["CRC"]) & _MASK64 != expected:
                raise ArchiveError(f"{ns}: CRC {int(ns_header['CRC']) & _MASK64:#x}, computed {expected:#x}")
            archive.finished.append(ns)
            archive.documents.setdefault(ns, [])
            continue
        if ns_header["CRC"] != 0:
            raise ArchiveError(f"{ns}: a segment header with CRC {ns_header['CRC']}")
        docs = archive.documents.setdefault(ns, [])
        while (doc := src.item(f"{ns} data")) is not None:
            docs.append(doc)
            crcs[ns] = crc64_xz(doc, crcs.get(ns, 0))

    unfinished = sorted(
        f"{m['db']}.{m['collection']}"
        for m in prelude
        if f"{m['db']}.{m['collection']}" not in archive.finished
        and f"{m['db']}.system.buckets.{m['collection']}" not in archive.finished
    )
    if unfinished:
        raise ArchiveError(f"the archive ends before the EOF of {unfinished}")
    return archive


def read_gzipped_archive(data: bytes) -> Archive:
    """Gunzips (every member) and parses."""
    try:
        plain = gzip.decompress(data)
    except (OSError, EOFError) as exc:
        raise ArchiveError(f"not a complete gzip stream: {exc}") from None
    return read_archive(plain)
