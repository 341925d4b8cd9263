#!/usr/bin/env python3
"""Builds the synthetic mongodump archives of this folder.

Python's standard library only: a small BSON encoder, CRC-64/XZ and the
archive framing written out by hand, so the vectors do not depend on the
code they test. Every value is fixed or derived from a fixed seed, so a run
writes the same archives again.

    python3 testdata/mongodump/generate.py          # (re)write the files
    python3 testdata/mongodump/generate.py --check  # compare, write nothing

The gzip file's compressed bytes come from the zlib Python links against;
another zlib version may compress differently. `--check` compares the
archive inside it, which is what the tests read.
"""

import base64
import gzip
import hashlib
import hmac
import json
import random
import struct
import sys
import uuid
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
MAGIC = struct.pack("<I", 0x8199E26D)
TERMINATOR = b"\xff\xff\xff\xff"


# BSON: just the types the vectors use.


class Int64(int):
    """A BSON int64 (a plain int is an int32)."""


class ObjectId(bytes):
    """A BSON ObjectId: 12 bytes."""


class Date(int):
    """A BSON UTC datetime: milliseconds since the epoch."""


class Uuid(bytes):
    """BSON binary, subtype 4."""


def cstring(s):
    raw = s.encode()
    assert b"\0" not in raw
    return raw + b"\0"


def element(key, value):
    name = cstring(key)
    if isinstance(value, bool):
        return b"\x08" + name + (b"\x01" if value else b"\x00")
    if isinstance(value, Int64):
        return b"\x12" + name + struct.pack("<q", value)
    if isinstance(value, Date):
        return b"\x09" + name + struct.pack("<q", value)
    if isinstance(value, int):
        return b"\x10" + name + struct.pack("<i", value)
    if isinstance(value, str):
        raw = value.encode() + b"\0"
        return b"\x02" + name + struct.pack("<i", len(raw)) + raw
    if isinstance(value, ObjectId):
        assert len(value) == 12
        return b"\x07" + name + value
    if isinstance(value, Uuid):
        return b"\x05" + name + struct.pack("<i", len(value)) + b"\x04" + value
    if isinstance(value, dict):
        return b"\x03" + name + document(value)
    if isinstance(value, list):
        return b"\x04" + name + document({str(i): v for i, v in enumerate(value)})
    raise TypeError(f"{key}: {type(value).__name__}")


def document(fields):
    body = b"".join(element(k, v) for k, v in fields.items())
    return struct.pack("<i", len(body) + 5) + body + b"\0"


# CRC-64/XZ (Go's hash/crc64 with the ECMA table).

_POLY = 0xC96C5795D7870F42
_TABLE = []
for _n in range(256):
    _crc = _n
    for _ in range(8):
        _crc = (_crc >> 1) ^ _POLY if _crc & 1 else _crc >> 1
    _TABLE.append(_crc)


def crc64(data):
    crc = 0xFFFFFFFFFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFFFFFFFFFF


assert crc64(b"123456789") == 0x995DC9BBDF1939FA


# The archive framing.


def signed(crc):
    """The 64 bits of a CRC as the int64 the EOF header stores."""
    return Int64(crc - (1 << 64) if crc >= 1 << 63 else crc)


def archive(header, prelude, body):
    """MAGIC, header, prelude and one segment plus EOF block per namespace.

    `header` is (concurrent_collections, server_version, tool_version);
    `prelude` a list of collection metadata dicts; `body` a list of
    (db, collection, [document bytes]) in stream order.
    """
    concurrent, server_version, tool_version = header
    out = [MAGIC]
    out.append(
        document(
            {
                "concurrent_collections": concurrent,
                "version": "0.1",
                "server_version": server_version,
                "tool_version": tool_version,
            }
        )
    )
    out += [document(meta) for meta in prelude]
    out.append(TERMINATOR)
    for db, coll, docs in body:
        out.append(document({"db": db, "collection": coll, "EOF": False, "CRC": Int64(0)}))
        out += docs
        out.append(TERMINATOR)
        crc = signed(crc64(b"".join(docs)))
        out.append(document({"db": db, "collection": coll, "EOF": True, "CRC": crc}))
        out.append(TERMINATOR)
    return b"".join(out)


def metadata_json(value):
    """Compact JSON, as mongodump writes the metadata string."""
    return json.dumps(value, separators=(",", ":"))


def num(n):
    return {"$numberInt": str(n)}


def id_index(ns=None):
    index = {"v": num(2), "key": {"_id": num(1)}, "name": "_id_"}
    if ns is not None:
        index["ns"] = ns
    return index


def object_id(seconds, process, counter):
    """An ObjectId as a server makes one: time, process part, counter."""
    return ObjectId(
        struct.pack(">I", seconds) + bytes.fromhex(process) + counter.to_bytes(3, "big")
    )


def uuid_hex(name):
    return uuid.uuid5(uuid.NAMESPACE_URL, "mongobak-testdata:" + name).hex


def modern_meta(db, coll, extra_indexes=()):
    """A collection metadata entry as mongodump 100.x writes it."""
    metadata = {
        "indexes": [id_index(), *extra_indexes],
        "uuid": uuid_hex(f"{db}.{coll}"),
        "collectionName": coll,
        "type": "collection",
    }
    return {
        "db": db,
        "collection": coll,
        "metadata": metadata_json(metadata),
        "size": 0,
        "type": "collection",
    }


# worked-example.archive: the worked example of docs/archive-format.md §5.


def worked_example():
    metadata = metadata_json(
        {"indexes": [id_index()], "collectionName": "foo", "type": "collection"}
    )
    prelude = [
        {"db": "test", "collection": "foo", "metadata": metadata, "size": 0, "type": "collection"}
    ]
    docs = [document({"_id": 1}), document({"_id": 2})]
    return archive((1, "7.0.14", "demo-1.0"), prelude, [("test", "foo", docs)])


# users-and-roles.archive: the form current mongodump writes (prelude
# entries with `type`, canonical metadata with uuid and collectionName),
# users, roles and system.version before the data.


def scram(user, password, mechanism, iterations, salt):
    if mechanism == "SCRAM-SHA-1":
        secret = hashlib.md5(f"{user}:mongo:{password}".encode()).hexdigest().encode()
        digest = "sha1"
    else:
        secret, digest = password.encode(), "sha256"
    salted = hashlib.pbkdf2_hmac(digest, secret, salt, iterations)
    client_key = hmac.new(salted, b"Client Key", digest).digest()
    server_key = hmac.new(salted, b"Server Key", digest).digest()
    return {
        "iterationCount": iterations,
        "salt": base64.b64encode(salt).decode(),
        "storedKey": base64.b64encode(hashlib.new(digest, client_key).digest()).decode(),
        "serverKey": base64.b64encode(server_key).decode(),
    }


def user(name, roles):
    # Throwaway passwords: these users exist only in this file.
    password = f"{name}-not-a-secret"
    salt = hashlib.sha256(f"salt:{name}".encode()).digest()
    return document(
        {
            "_id": f"admin.{name}",
            "userId": Uuid(uuid.uuid5(uuid.NAMESPACE_URL, "mongobak-testdata:user:" + name).bytes),
            "user": name,
            "db": "admin",
            "credentials": {
                "SCRAM-SHA-1": scram(name, password, "SCRAM-SHA-1", 10000, salt[:16]),
                "SCRAM-SHA-256": scram(name, password, "SCRAM-SHA-256", 15000, salt[:28]),
            },
            "roles": [{"role": r, "db": db} for r, db in roles],
        }
    )


def role(name, privileges, roles):
    return document(
        {
            "_id": f"admin.{name}",
            "role": name,
            "db": "admin",
            "privileges": privileges,
            "roles": [{"role": r, "db": db} for r, db in roles],
        }
    )


def users_and_roles():
    users = [
        user(
            "sourceAdmin",
            [("backup", "admin"), ("restore", "admin"), ("readWriteAnyDatabase", "admin")],
        ),
        user("reporter", [("reportReader", "admin")]),
        user("editor", [("reportWriter", "admin")]),
        user("operator", [("opsWatcher", "admin")]),
    ]
    # Each role after the roles it inherits.
    roles = [
        role(
            "reportReader",
            [
                {
                    "resource": {"db": "testDB", "collection": ""},
                    "actions": ["find", "listCollections"],
                }
            ],
            [],
        ),
        role(
            "reportWriter",
            [
                {
                    "resource": {"db": "testDB", "collection": "reports"},
                    "actions": ["insert", "remove", "update"],
                }
            ],
            [("reportReader", "admin")],
        ),
        role(
            "clusterWatcher",
            [{"resource": {"cluster": True}, "actions": ["replSetGetStatus", "serverStatus"]}],
            [],
        ),
        role(
            "opsWatcher",
            [
                {"resource": {"db": "", "collection": ""}, "actions": ["collStats", "indexStats"]},
                {"resource": {"db": "admin", "collection": "system.version"}, "actions": ["find"]},
            ],
            [("clusterWatcher", "admin"), ("read", "testDB")],
        ),
    ]
    version = [
        document({"_id": "featureCompatibilityVersion", "version": "8.0"}),
        document({"_id": "authSchema", "currentVersion": 5}),
    ]
    rows = [
        document(
            {
                "_id": object_id(0x67A1B2C3, "5eed5eed5e", i),
                "i": 1000 + i,
            }
        )
        for i in range(1500)
    ]
    unique = {"unique": True}
    prelude = [
        modern_meta("testDB", "testColl"),
        modern_meta(
            "admin",
            "system.users",
            [{"v": num(2), "key": {"user": num(1), "db": num(1)}, "name": "user_1_db_1", **unique}],
        ),
        modern_meta(
            "admin",
            "system.roles",
            [{"v": num(2), "key": {"role": num(1), "db": num(1)}, "name": "role_1_db_1", **unique}],
        ),
        modern_meta("admin", "system.version"),
    ]
    body = [
        ("admin", "system.users", users),
        ("admin", "system.roles", roles),
        ("admin", "system.version", version),
        ("testDB", "testColl", rows),
    ]
    return archive((4, "8.0.4", "generate.py"), prelude, body)


# whole-stream-gzip.agz: `--archive --gzip` of an older tool (prelude
# without `type`, `ns` in the index), one namespace in a single segment of
# about 1.5 MB, the whole stream in one gzip member with the header Go's
# compress/gzip writes.


def one_segment():
    rng = random.Random(20240607)
    merchants = [object_id(0x64C0FFEE, "0000000000", rng.getrandbits(24)) for _ in range(50)]
    created = 1_700_000_000_000
    docs = []
    for i in range(20_000):
        created += rng.getrandbits(16) * 10
        docs.append(
            document(
                {
                    "_id": object_id(0x65000000 + i // 64, "c0ffee0001", i),
                    "amount": rng.getrandbits(28),
                    "createdAt": Date(created),
                    "merchantId": merchants[rng.getrandbits(32) % len(merchants)],
                }
            )
        )
    metadata = metadata_json(
        {"options": {}, "indexes": [id_index("shop.payments")], "uuid": uuid_hex("shop.payments")}
    )
    prelude = [{"db": "shop", "collection": "payments", "metadata": metadata, "size": 0}]
    return archive((4, "4.2.25", "generate.py"), prelude, [("shop", "payments", docs)])


def go_gzip(data):
    """One gzip member: header 1f8b 08 00 00000000 00 ff (no name, no
    time, unknown OS), raw deflate, CRC-32 and length."""
    deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
    body = deflate.compress(data) + deflate.flush()
    header = bytes([0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 0xFF])
    return header + body + struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF)


VECTORS = {
    "synthetic/worked-example.archive": (worked_example, False),
    "synthetic/users-and-roles.archive": (users_and_roles, False),
    "synthetic/whole-stream-gzip.agz": (one_segment, True),
}


def main():
    check = sys.argv[1:] == ["--check"]
    failed = False
    for name, (build, gzipped) in VECTORS.items():
        data = build()
        path = HERE / name
        if check:
            stored = path.read_bytes()
            if gzipped:
                stored = gzip.decompress(stored)
            same = stored == data
            print(f"{name}: {'same' if same else 'DIFFERENT'}")
            failed |= not same
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(go_gzip(data) if gzipped else data)
            print(f"{name}: {path.stat().st_size} bytes")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
