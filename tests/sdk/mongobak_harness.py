"""Test accounts, instances and a `mongobak serve` process for the SDK suite.

The fixtures in conftest.py build on this module; tests import the
constants (keys, instance IDs) from here.
"""

import os
import queue
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

# How long a server may take to print its listening line.
START_TIMEOUT = 30.0
# How long a server may take to exit after SIGTERM before it is killed.
STOP_TIMEOUT = 10.0
# How long SecantusDB may take to answer `hello` after its start.
MONGO_START_TIMEOUT = 60.0

PROXY_VARIABLES = (
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
)


def resend_if_replayed(send, *args, **kwargs):
    """Runs one official-SDK call, `send(*args, **kwargs)`, and sends it once
    more in the next second if mongobak refused it as a replayed signature.

    The official SDKs sign neither the action nor a nonce with TC3, so two
    calls with the same parameters within one second carry the same
    signature, and mongobak takes the second for a replay of the first
    unless both are the same read-only call (README, Security). Nothing was
    done for a refused call, so sending it again, signed anew a second
    later, is safe. Tests that are about replays call the SDK directly.
    """
    from tencentcloud.common.exception.tencent_cloud_sdk_exception import (
        TencentCloudSDKException,
    )

    try:
        return send(*args, **kwargs)
    except TencentCloudSDKException as err:
        replayed = err.get_code() == "AuthFailure.SignatureFailure" and "replayed" in (
            err.get_message() or ""
        )
        if not replayed:
            raise
    time.sleep(1.02 - time.time() % 1.0)
    return send(*args, **kwargs)


def mongobak_bin() -> str:
    default = Path(__file__).resolve().parents[2] / "target" / "debug" / "mongobak"
    return os.environ.get("MONGOBAK_BIN", str(default))


def client_env(**extra: str) -> Dict[str, str]:
    """The environment for client subprocesses: no proxies."""
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES}
    env.update(extra)
    return env


@dataclass(frozen=True)
class Key:
    """An API key and the Uin it belongs to."""

    uin: str
    secret_id: str
    secret_key: str


# Root account A: has an AppId, owns three instances.
KEY_A = Key("100000000001", "AKIDmbA7x2Qk9LfT4sVn8RwZ3pYc6HuJ0eGd", "mbA1k9Vq3Zr7Tw2Lp5Xs8Cf4Hn6Jd0Gb")
# Sub-account of A allowed only mongodb:DescribeDBBackups.
KEY_A_DENIED = Key("100000000002", "AKIDmbS2d8Fh3Jk6Lq9Wz4Xc7Vb1Nm5Pt0Ry", "mbS2p4Rt8Yu1Io3Pa6Sd9Fg2Hj5Kl7Zx0")
# Sub-account of A allowed mongodb:Describe* on one instance only.
KEY_A_ONE = Key("100000000003", "AKIDmbS3w5Ee7Rr9Tt2Yy4Uu6Ii8Oo1Pp3Aa", "mbS3m6Nb9Vc2Xz5Lk8Jh1Gf4Ds7Aq0We")
# Root account B: owns one instance.
KEY_B = Key("100000000011", "AKIDmbB4q7Wm1Ek5Rn9Tb3Yv6Uc8Ix2Oz0Pa", "mbB4s1Dd5Ff8Gg2Hh6Jj9Kk3Ll7Zz0Xx")
# Root account C: no AppId configured.
KEY_C = Key("100000000021", "AKIDmbC5z8Xn2Cm6Vb0Nq4Wl7Ek1Rj3Tf9Yh", "mbC5a3Ss7Dd1Ff4Gg8Hh2Jj6Kk9Ll0Qq")
# Root account D: disabled, with a sub-user.
KEY_D = Key("100000000031", "AKIDmbD6r1Ty4Ui7Op0As3Df6Gh9Jk2Lz5Xc", "mbD6w2Ee4Rr6Tt8Yy0Uu3Ii5Oo7Pp9Aa")
KEY_D_SUB = Key("100000000032", "AKIDmbD7v3Bn6Mq9Wx2Ce5Rv8Tb1Yn4Um7Ik", "mbD7k5Ll9Zz3Xx7Cc1Vv5Bb9Nn3Mm7Qq")

# A's instances. In ap-guangzhou, sorted by CreateTime DESC (the default
# order; ties on the creation second fall back to the ID, descending), the
# sharded cluster comes first.
A_REPLICA = "cmgo-ord3rs01"  # replica set "orders"
A_SHARDED = "cmgo-shard002"  # sharded cluster "analytics", 2 shards
A_SHANGHAI = "cmgo-shang001"  # replica set "reports" in ap-shanghai
B_INSTANCE = "cmgo-bbbb0001"  # B's replica set in ap-guangzhou
B_NAME = "订单 orders-b"  # non-ASCII, with a space: exercises every encoding
A_GUANGZHOU = {A_REPLICA, A_SHARDED}


def accounts_toml() -> str:
    return f"""
[[accounts]]
app_id = 1250000001
uin = "{KEY_A.uin}"
secret_id = "{KEY_A.secret_id}"
secret_key = "{KEY_A.secret_key}"

[[accounts.sub_users]]
uin = "{KEY_A_DENIED.uin}"
secret_id = "{KEY_A_DENIED.secret_id}"
secret_key = "{KEY_A_DENIED.secret_key}"
allow = ["mongodb:DescribeDBBackups"]

[[accounts.sub_users]]
uin = "{KEY_A_ONE.uin}"
secret_id = "{KEY_A_ONE.secret_id}"
secret_key = "{KEY_A_ONE.secret_key}"
allow = ["mongodb:Describe*"]
resources = ["qcs::mongodb:ap-guangzhou:uin/{KEY_A.uin}:instance/cmgo-ord3*"]

[[accounts]]
app_id = 1250000011
uin = "{KEY_B.uin}"
secret_id = "{KEY_B.secret_id}"
secret_key = "{KEY_B.secret_key}"

[[accounts]]
uin = "{KEY_C.uin}"
secret_id = "{KEY_C.secret_id}"
secret_key = "{KEY_C.secret_key}"

[[accounts]]
app_id = 1250000031
uin = "{KEY_D.uin}"
secret_id = "{KEY_D.secret_id}"
secret_key = "{KEY_D.secret_key}"
disabled = true

[[accounts.sub_users]]
uin = "{KEY_D_SUB.uin}"
secret_id = "{KEY_D_SUB.secret_id}"
secret_key = "{KEY_D_SUB.secret_key}"
allow = ["mongodb:*"]
"""


def _instances_toml() -> str:
    return f"""
[[instances]]
id = "{A_REPLICA}"
name = "orders"
region = "ap-guangzhou"
owner_uin = "{KEY_A.uin}"
replica_sets = ["mongodb://10.0.0.11:27017/?replicaSet=rs0"]

[[instances]]
id = "{A_SHARDED}"
name = "analytics"
region = "ap-guangzhou"
owner_uin = "{KEY_A.uin}"
replica_sets = [
  "mongodb://backup:s3cr3t@10.0.1.21:27018,10.0.1.22:27018/?replicaSet=shard0",
  "mongodb://10.0.1.31:27019/?replicaSet=shard1",
]

[[instances]]
id = "{A_SHANGHAI}"
name = "reports"
region = "ap-shanghai"
owner_uin = "{KEY_A.uin}"
replica_sets = ["mongodb://10.0.2.11:27017/?directConnection=true"]

[[instances]]
id = "{B_INSTANCE}"
name = "{B_NAME}"
region = "ap-guangzhou"
owner_uin = "{KEY_B.uin}"
replica_sets = ["mongodb://10.1.0.11:27017/"]
"""


# The default server lets the suite call as fast as it likes; the rate limit
# test sets its own limits.
UNLIMITED = "[rate_limits]\ndefault = 100000\n"


def default_body(rate_limits: str = UNLIMITED) -> str:
    """Accounts and instances of the default server after a [rate_limits]
    table."""
    return rate_limits + accounts_toml() + _instances_toml()


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


@dataclass(eq=False)
class Server:
    """A running `mongobak serve`."""

    proc: subprocess.Popen
    url: str
    endpoint: str  # "127.0.0.1:PORT"
    port: int
    data_dir: Path
    config_path: Path
    stderr_path: Path
    keys: Dict[str, Key] = field(default_factory=dict)
    # The PostgreSQL metadata database, or None for SQLite in data_dir.
    metadata_url: Optional[str] = None
    # The S3 storage URL, or None for the folder data_dir/blobs.
    storage_url: Optional[str] = None
    # The admin listener's URL, when the config sets [server] admin_listen.
    admin_url: Optional[str] = None
    _stderr_file: Optional[object] = None
    _stdout_pump: Optional[threading.Thread] = None

    def metadata_sql(self, sql: str) -> None:
        """Runs `sql` on the server's metadata store, behind its back."""
        if self.metadata_url:
            subprocess.run(["psql", self.metadata_url, "-qc", sql], check=True, capture_output=True)
        else:
            import sqlite3

            db = sqlite3.connect(self.data_dir / "meta.db", timeout=10, isolation_level=None)
            try:
                db.execute(sql)
            finally:
                db.close()

    def stored_objects(self, prefix: str) -> Dict[str, int]:
        """The objects under `prefix` (a folder path ending in "/") in the
        server's storage, with their sizes: files under `<data_dir>/blobs`,
        or the server's prefix of the suite's S3 bucket."""
        if self.storage_url is None:
            root = self.data_dir / "blobs"
            return {
                str(path.relative_to(root)): path.stat().st_size
                for path in (root / prefix).rglob("*")
                if path.is_file()
            }
        import boto3

        bucket, root = self.storage_url[len("s3://"):].split("?", 1)[0].split("/", 1)
        endpoint = os.environ["MONGOBAK_TEST_S3_ENDPOINT"]
        s3 = boto3.client(
            "s3", endpoint_url=endpoint, region_name="us-east-1",
            aws_access_key_id=S3_ACCESS_KEY_ID, aws_secret_access_key=S3_SECRET_ACCESS_KEY,
        )
        found = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{root}/{prefix}"):
            for item in page.get("Contents", []):
                found[item["Key"][len(root) + 1:]] = item["Size"]
        return found

    def stderr_tail(self, limit: int = 8000) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""
        return text[-limit:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._stdout_pump:
            # The pump closes stdout at EOF, which the exit brings.
            self._stdout_pump.join(timeout=STOP_TIMEOUT)
        if self._stderr_file:
            self._stderr_file.close()
            self._stderr_file = None
        LIVE_SERVERS.discard(self)


# Servers started and not yet stopped, for failure reports.
LIVE_SERVERS: set = set()


POSTGRES_ADMIN = os.environ.get("MONGOBAK_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432/postgres")


def keyed_database(key: str) -> Optional[str]:
    """With MONGOBAK_TEST_METADATA=postgres, the URL of a PostgreSQL database
    kept for `key` (a server's folder), created on first use with psql;
    otherwise None (SQLite in the data folder). Named like the Rust
    harness's (`mongobak_keyed_<FNV-1a of the key>`), dropped before a run."""
    if os.environ.get("MONGOBAK_TEST_METADATA") != "postgres":
        return None
    name = f"mongobak_keyed_{_fnv1a(key):016x}"
    exists = subprocess.run(
        ["psql", POSTGRES_ADMIN, "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{name}'"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    if exists != "1":
        subprocess.run(["psql", POSTGRES_ADMIN, "-qc", f"CREATE DATABASE {name}"], check=True,
                       capture_output=True)
    return POSTGRES_ADMIN.rsplit("/", 1)[0] + "/" + name


# The S3 keys the suite's servers get (moto takes any).
S3_ACCESS_KEY_ID = "mongobak-test"
S3_SECRET_ACCESS_KEY = "mongobak-test-secret"


def keyed_storage(key: str) -> Optional[str]:
    """With MONGOBAK_TEST_STORAGE=s3, the storage URL kept for `key` (a
    server's folder): a prefix of its own, `keyed_<FNV-1a of the key>`, in
    the bucket MONGOBAK_TEST_S3_BUCKET (default mongobak-test) on the S3
    server at MONGOBAK_TEST_S3_ENDPOINT, which scripts/test starts;
    otherwise None (the data folder)."""
    if os.environ.get("MONGOBAK_TEST_STORAGE") != "s3":
        return None
    endpoint = os.environ["MONGOBAK_TEST_S3_ENDPOINT"]
    bucket = os.environ.get("MONGOBAK_TEST_S3_BUCKET", "mongobak-test")
    return f"s3://{bucket}/keyed_{_fnv1a(key):016x}?endpoint={endpoint}&region=us-east-1"


def _fnv1a(key: str) -> int:
    digest = 0xCBF29CE484222325
    for byte in key.encode():
        digest = ((digest ^ byte) * 0x100000001B3) % (1 << 64)
    return digest


def start_server(
    directory: Path,
    body: str,
    server_options: Optional[dict] = None,
) -> Server:
    """Writes a config into `directory`, starts `mongobak serve` and waits
    for its listening line. `body` is the TOML after [server]."""
    directory.mkdir(parents=True, exist_ok=True)
    data_dir = directory / "data"
    options = {"listen": "127.0.0.1:0", "data_dir": str(data_dir), "timezone": "Asia/Shanghai"}
    options.update(server_options or {})
    server_toml = "[server]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in options.items())
    config_path = directory / "mongobak.toml"
    config_path.write_text(server_toml + body, encoding="utf-8")
    stderr_path = directory / "mongobak.stderr.log"
    stderr_file = open(stderr_path, "wb")
    env = client_env(RUST_LOG=os.environ.get("RUST_LOG", "info"), NO_COLOR="1")
    # MONGOBAK_* variables would override the file.
    env = {k: v for k, v in env.items() if not k.startswith("MONGOBAK_")}
    # Automatic backups would start at the default rule's hour in the middle
    # of a test; the scheduler has tests of its own.
    env["MONGOBAK_BACKUPS_AUTOMATIC"] = "false"
    # A backup fails at its first error, as the tests of failures expect;
    # the runner's retries have tests of their own (crates/worker).
    env["MONGOBAK_BACKUPS_ATTEMPTS"] = "1"
    metadata_url = keyed_database(str(directory))
    if metadata_url:
        env["MONGOBAK_METADATA_URL"] = metadata_url
    # And its storage, unless the test chose one.
    storage_url = None if "[storage]" in body else keyed_storage(str(directory))
    if storage_url:
        env["MONGOBAK_STORAGE_URL"] = storage_url
        env["MONGOBAK_STORAGE_ACCESS_KEY_ID"] = S3_ACCESS_KEY_ID
        env["MONGOBAK_STORAGE_SECRET_ACCESS_KEY"] = S3_SECRET_ACCESS_KEY
    proc = subprocess.Popen(
        [mongobak_bin(), "serve", "--config", str(config_path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr_file,
        env=env,
        text=True,
    )
    lines: "queue.Queue[Optional[str]]" = queue.Queue()

    def pump() -> None:
        with proc.stdout:
            for line in proc.stdout:
                lines.put(line)
        lines.put(None)

    pump_thread = threading.Thread(target=pump, daemon=True)
    pump_thread.start()
    url = None
    admin_url = None
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while url is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"mongobak did not print its address within {START_TIMEOUT} s")
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise RuntimeError(f"mongobak exited before listening (status {proc.wait()})")
            prefix = "mongobak listening on "
            admin_prefix = "mongobak admin listening on "
            if line.startswith(prefix):
                url = line[len(prefix):].strip()
            elif line.startswith(admin_prefix):
                admin_url = line[len(admin_prefix):].strip()
    except Exception as exc:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stderr_file.close()
        raise RuntimeError(f"{exc}\n--- mongobak stderr ---\n{stderr_path.read_text(errors='replace')}") from None
    endpoint = url.split("://", 1)[1]
    server = Server(
        proc=proc,
        url=url,
        endpoint=endpoint,
        port=int(endpoint.rsplit(":", 1)[1]),
        data_dir=data_dir,
        config_path=config_path,
        stderr_path=stderr_path,
        metadata_url=metadata_url,
        storage_url=storage_url,
        admin_url=admin_url,
        keys={
            "A": KEY_A,
            "A_DENIED": KEY_A_DENIED,
            "A_ONE": KEY_A_ONE,
            "B": KEY_B,
            "C": KEY_C,
            "D": KEY_D,
            "D_SUB": KEY_D_SUB,
        },
        _stderr_file=stderr_file,
        _stdout_pump=pump_thread,
    )
    LIVE_SERVERS.add(server)
    return server


# -- a real MongoDB deployment (SecantusDB) to back up ---------------------

# A's instances of the backup tests, in ap-guangzhou.
BACKUP_INSTANCE = "cmgo-bkup0001"  # a SecantusDB server with data
DEAD_INSTANCE = "cmgo-dead0001"  # a closed port: its backups fail fast


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def secantusd() -> str:
    """The `secantusd-py` launcher of the venv running the tests."""
    return os.environ.get("SECANTUSD", str(Path(sys.executable).parent / "secantusd-py"))


def closed_port_uri(timeout_ms: int) -> str:
    """A replica set URI nothing listens on; server selection gives up
    after `timeout_ms`."""
    return f"mongodb://127.0.0.1:{free_port()}/?directConnection=true&serverSelectionTimeoutMS={timeout_ms}"


@dataclass(eq=False)
class MongoServer:
    """A running SecantusDB server (MongoDB wire protocol, with an oplog)."""

    proc: subprocess.Popen
    port: int
    log_path: Path
    # Document count of each seeded namespace.
    seeded: Dict[str, int] = field(default_factory=dict)
    _log_file: Optional[object] = None

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def client(self):
        import pymongo

        return pymongo.MongoClient(self.uri, serverSelectionTimeoutMS=5000)

    def log_tail(self, limit: int = 8000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log_file:
            self._log_file.close()
            self._log_file = None
        LIVE_MONGOS.discard(self)


# SecantusDB servers started and not yet stopped, for failure reports.
LIVE_MONGOS: set = set()


def _mongo_answers(port: int) -> bool:
    import pymongo
    from pymongo.errors import PyMongoError

    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    client = pymongo.MongoClient(
        f"mongodb://127.0.0.1:{port}/?directConnection=true",
        serverSelectionTimeoutMS=2000,
        connectTimeoutMS=2000,
    )
    try:
        client.admin.command("hello")
        return True
    except PyMongoError:
        return False
    finally:
        client.close()


def start_mongo(directory: Path, attempts: int = 3) -> MongoServer:
    """Starts SecantusDB on a free port with its data in `directory` and
    waits until it answers `hello`. SecantusDB prints no listening line, so
    the port is picked here; another attempt follows if it was taken."""
    directory.mkdir(parents=True, exist_ok=True)
    launcher = secantusd()
    if not os.access(launcher, os.X_OK):
        raise RuntimeError(f"SecantusDB is not installed at {launcher}: install tests/requirements.txt into .venv")
    failures = []
    for attempt in range(attempts):
        port = free_port()
        log_path = directory / f"secantusd-{port}.log"
        log_file = open(log_path, "wb")
        proc = subprocess.Popen(
            [
                launcher,
                "--host", "127.0.0.1",
                "--port", str(port),
                "--storage-path", str(directory / f"data{attempt}"),
                "--enable-test-commands",
                "--log-level", "WARNING",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=client_env(),
        )
        server = MongoServer(proc=proc, port=port, log_path=log_path, _log_file=log_file)
        deadline = time.monotonic() + MONGO_START_TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None:
            if _mongo_answers(port):
                LIVE_MONGOS.add(server)
                return server
            time.sleep(0.1)
        status = proc.poll()
        server.stop()
        failures.append(f"port {port}: " + (f"exited {status}" if status is not None else "no answer in time")
                        + f"\n{server.log_tail(2000)}")
    raise RuntimeError("SecantusDB did not start:\n" + "\n".join(failures))


def seed(mongo: MongoServer) -> Dict[str, int]:
    """A few collections with a few hundred documents and secondary
    indexes; returns the document count of each namespace."""
    client = mongo.client()
    try:
        shop = client["shop"]
        shop.orders.insert_many(
            [
                {"_id": i, "customer": f"c{i % 40:03d}", "total": i * 1.5, "items": ["a", "b"][: i % 3]}
                for i in range(300)
            ]
        )
        shop.orders.create_index([("customer", 1), ("total", -1)], name="customer_total")
        shop.customers.insert_many([{"_id": f"c{i:03d}", "name": f"客户 {i}", "vip": i % 5 == 0} for i in range(40)])
        shop.customers.create_index("name", unique=True)
        client["inventory"].items.insert_many([{"sku": f"sku-{i}", "stock": i} for i in range(120)])
        return {
            "shop.orders": shop.orders.count_documents({}),
            "shop.customers": shop.customers.count_documents({}),
            "inventory.items": client["inventory"].items.count_documents({}),
        }
    finally:
        client.close()


def instance_toml(instance_id: str, uri: str, owner: Key = KEY_A, region: str = "ap-guangzhou") -> str:
    return f"""
[[instances]]
id = "{instance_id}"
name = "{instance_id}"
region = "{region}"
owner_uin = "{owner.uin}"
replica_sets = [{_toml_value(uri)}]
"""
