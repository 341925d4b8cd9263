"""Backup download tasks through the official Python SDK:
CreateBackupDownloadTask and DescribeBackupDownloadTask against a real
`mongobak serve` backing up real MongoDB servers (SecantusDB), the files
fetched from the URLs handed out and read back with an independent
mongodump archive reader (mongodump_archive.py)."""

import base64
import datetime
import hashlib
import hmac
import json
import random
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.mongodb.v20190725 import models, mongodb_client

from mongobak_harness import (
    A_REPLICA,
    B_INSTANCE,
    KEY_A,
    KEY_A_DENIED,
    KEY_A_ONE,
    KEY_B,
    KEY_C,
    KEY_D_SUB,
    Key,
    default_body,
    instance_toml,
    resend_if_replayed,
    start_mongo,
    start_server,
)
from mongodump_archive import OPLOG, crc64_xz, read_gzipped_archive

REPLICA = "cmgo-dlrs0001"  # A's replica set on the seeded `mongo`
SHARDED = "cmgo-dlsh0001"  # A's two-shard cluster: `mongo` and `shard1`
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")
SHANGHAI = datetime.timezone(datetime.timedelta(hours=8))
# Fields DescribeBackupDownloadTask adds beyond the SDK's BackupDownloadTask.
EXTRA_TASK_FIELDS = {"FailureReason", "SHA256"}
DEADLINE = 60.0
POLL_INTERVAL = 0.1
# Direct connections: the download URLs are local.
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# -- clients -------------------------------------------------------------------


def client(server, key: Key = KEY_A, region="ap-guangzhou", sign="TC3-HMAC-SHA256", method="POST"):
    hp = HttpProfile(endpoint=server.endpoint, protocol="http", reqMethod=method, reqTimeout=15)
    cp = ClientProfile(signMethod=sign, httpProfile=hp)
    return mongodb_client.MongodbClient(credential.Credential(key.secret_id, key.secret_key), region, cp)


def call(c, action: str, **params):
    """One call through the SDK's request and response models. The answer
    may carry only the fields the models know, plus the documented extra
    fields of a download task."""
    request = getattr(models, f"{action}Request")()
    request.from_json_string(json.dumps(params))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        response = resend_if_replayed(getattr(c, action), request)
    for w in caught:
        text = str(w.message)
        if "useless" in text:
            unknown = set(text.split(" ", 1)[0].split(","))
            assert unknown <= EXTRA_TASK_FIELDS, f"{action}: fields the SDK models do not know: {text}"
    assert UUID.match(response.RequestId), response.RequestId
    return response


def raw(c, action: str, **params) -> dict:
    """The `Response` object as sent, extra fields included."""
    response = resend_if_replayed(c.call_json, action, params)["Response"]
    assert UUID.match(response["RequestId"]), response
    return response


def expect_error(code, fn, *args, **kwargs) -> TencentCloudSDKException:
    with pytest.raises(TencentCloudSDKException) as info:
        resend_if_replayed(fn, *args, **kwargs)
    err = info.value
    assert err.get_code() == code, f"{err.get_code()}: {err.get_message()}"
    assert UUID.match(err.get_request_id() or ""), err.get_request_id()
    assert err.get_message(), "an error carries a message"
    return err


def create_tasks(c, instance_id: str, backup_name: str, sets):
    """CreateBackupDownloadTask built from the SDK's models."""
    request = models.CreateBackupDownloadTaskRequest()
    request.InstanceId = instance_id
    request.BackupName = backup_name
    request.BackupSets = []
    for set_id in sets:
        info = models.ReplicaSetInfo()
        info.ReplicaSetId = set_id
        request.BackupSets.append(info)
    response = resend_if_replayed(c.CreateBackupDownloadTask, request)
    assert UUID.match(response.RequestId), response.RequestId
    return response


def v1_get(server, key: Key, action: str, params: dict, region="ap-guangzhou") -> dict:
    """A GET signed by hand with HmacSHA256 (docs/protocol.md §1.2), for
    spellings the SDK never sends. Returns the `Response` object."""
    signed = {
        "Action": action,
        "Version": "2019-07-25",
        "Region": region,
        "Timestamp": str(int(time.time())),
        "Nonce": str(random.randint(1, 2**31)),
        "SecretId": key.secret_id,
        "SignatureMethod": "HmacSHA256",
        **params,
    }
    to_sign = "GET" + server.endpoint + "/?" + "&".join(f"{k}={signed[k]}" for k in sorted(signed))
    digest = hmac.new(key.secret_key.encode(), to_sign.encode(), hashlib.sha256).digest()
    query = urllib.parse.urlencode({**signed, "Signature": base64.b64encode(digest).decode()})
    with NO_PROXY.open(f"{server.url}/?{query}", timeout=15) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"] == "application/json"
        response = json.loads(answer.read())["Response"]
    assert UUID.match(response["RequestId"]), response
    return response


# -- backups and tasks -----------------------------------------------------------


def shanghai_now() -> datetime.datetime:
    return datetime.datetime.now(SHANGHAI).replace(tzinfo=None, microsecond=0)


def take_backup(c, instance_id: str) -> str:
    """A finished backup of the instance: its name."""
    created = call(c, "CreateBackupDBInstance", InstanceId=instance_id, BackupMethod=0)
    limit = time.monotonic() + DEADLINE
    while True:
        info = raw(c, "DescribeAsyncRequestInfo", AsyncRequestId=created.AsyncRequestId)
        if info["Status"] not in ("initial", "running"):
            break
        assert time.monotonic() < limit, f"backup of {instance_id} still {info['Status']}"
        time.sleep(POLL_INTERVAL)
    assert info["Status"] == "success", info
    return info["BackupName"]


def tasks_of(c, instance_id: str, backup_name: str) -> dict:
    """{ReplicaSetId: (task model, raw task)} of one backup."""
    response = call(c, "DescribeBackupDownloadTask", InstanceId=instance_id, BackupName=backup_name, Limit=100)
    answer = raw(c, "DescribeBackupDownloadTask", InstanceId=instance_id, BackupName=backup_name, Limit=100)
    assert response.TotalCount == len(response.Tasks)
    by_set = {}
    for model, plain in zip(response.Tasks, answer["Tasks"]):
        assert model.ReplicaSetId not in by_set, f"two tasks for {model.ReplicaSetId}"
        by_set[model.ReplicaSetId] = (model, plain)
    return by_set


def wait_done(c, instance_id: str, backup_name: str, sets) -> dict:
    """Polls DescribeBackupDownloadTask until the tasks of `sets` are done;
    returns them as tasks_of does. Every status seen must be a documented one."""
    limit = time.monotonic() + DEADLINE
    while True:
        tasks = tasks_of(c, instance_id, backup_name)
        for model, plain in tasks.values():
            assert model.Status in (0, 1, 2, 4), plain
        if set(sets) <= set(tasks) and all(tasks[s][0].Status == 2 for s in sets):
            return tasks
        assert time.monotonic() < limit, f"not done within {DEADLINE} s: {[t[1] for t in tasks.values()]}"
        time.sleep(POLL_INTERVAL)


def fetch(url: str, headers=None):
    """(status, headers, body) of a GET."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with NO_PROXY.open(request, timeout=30) as answer:
            return answer.status, answer.headers, answer.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def file_name(backup_name: str, replica_set_id: str) -> str:
    """`<instance>_<backup time>_<replica set>.archive.gz`, no spaces or colons."""
    return f"{backup_name.replace(':', '').replace(' ', '_')}_{replica_set_id}.archive.gz"


# -- the source ------------------------------------------------------------------

RAW = CodecOptions(document_class=RawBSONDocument)


def source_documents(mongo) -> dict:
    """{namespace: sorted raw documents} of every user database."""
    c = mongo.client()
    try:
        out = {}
        for db_name in c.list_database_names():
            if db_name in ("admin", "local", "config"):
                continue
            db = c.get_database(db_name, codec_options=RAW)
            for spec in db.list_collections():
                if spec.get("type", "collection") != "collection" or spec["name"].startswith("system."):
                    continue
                out[f"{db_name}.{spec['name']}"] = sorted(d.raw for d in db[spec["name"]].find({}))
        return out
    finally:
        c.close()


def seed_shard1(mongo) -> None:
    """Data unlike the main seed, so the two shards' files differ: every
    common BSON type, an empty collection and a compound index."""
    c = mongo.client()
    try:
        events = c["metrics"]["events"]
        events.insert_many(
            [
                {
                    "_id": i,
                    "kind": ["click", "view", "buy"][i % 3],
                    "at": datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc) + datetime.timedelta(minutes=i),
                    "amount": i / 7,
                    "big": 2**40 + i,
                    "tags": [f"t{i % 5}", None, True],
                    "blob": bytes([i % 256]) * (i % 17),
                    "nested": {"depth": {"n": i, "文字": "值"}},
                }
                for i in range(250)
            ]
        )
        events.create_index([("kind", 1), ("at", -1)], name="kind_at")
        c["metrics"].create_collection("empty")
    finally:
        c.close()


# -- checking a file -------------------------------------------------------------


def check_file(task, plain: dict, backup_name: str, source: dict) -> None:
    """Fetches a done task's file and checks it whole: the task's fields,
    the HTTP answer, the checksums and every document against the source."""
    assert task.Status == 2 and task.Percent == 100, plain
    assert isinstance(task.BackupSize, int) and task.BackupSize > 0, plain
    assert isinstance(task.TimeSpend, int) and task.TimeSpend >= 0, plain
    assert TIME.match(task.CreateTime), task.CreateTime
    assert task.BackupName == backup_name
    assert (task.BackupMethod, task.Region) == (0, "ap-guangzhou")
    assert plain["FailureReason"] == "", plain
    assert HEX64.match(plain["SHA256"]), plain
    assert task.Url, plain
    url = urllib.parse.urlsplit(task.Url)
    name = file_name(backup_name, task.ReplicaSetId)
    assert re.fullmatch(rf"/download/\d+/{re.escape(name)}", url.path), task.Url
    assert " " not in task.Url and "%3A" not in task.Url, task.Url

    status, headers, body = fetch(task.Url)
    assert status == 200, (status, body[:200])
    assert len(body) == task.BackupSize == int(headers["Content-Length"])
    digest = hashlib.sha256(body).hexdigest()
    assert headers["ETag"] == f'"{digest}"', headers["ETag"]
    assert plain["SHA256"] == digest
    assert name in headers["Content-Disposition"], headers["Content-Disposition"]
    sibling = urllib.parse.urlunsplit(url._replace(path=url.path + ".sha256"))
    status, _, text = fetch(sibling)
    assert status == 200, (status, text)
    assert text.decode().split() == [digest, name], text

    archive = read_gzipped_archive(body)
    assert archive.header["concurrent_collections"] >= 1
    declared = [f"{m['db']}.{m['collection']}" for m in archive.prelude]
    assert declared[-1] == OPLOG, declared
    admin = [ns for ns in declared if ns.startswith("admin.")]
    assert declared[: len(admin)] == admin, f"auth namespaces come first: {declared}"
    assert archive.finished[-1] == OPLOG, archive.finished
    data = {ns: docs for ns, docs in archive.documents.items() if ns != OPLOG and not ns.startswith("admin.")}
    assert set(data) == set(source), (sorted(data), sorted(source))
    for ns, docs in source.items():
        assert sorted(data[ns]) == docs, f"{ns}: {len(data[ns])} documents in the file, {len(docs)} in the source"
    for entry in archive.documents[OPLOG]:
        assert RawBSONDocument(entry)["op"] in ("i", "u", "d", "c", "n"), RawBSONDocument(entry)


# -- fixtures --------------------------------------------------------------------


@pytest.fixture(scope="module")
def shard1(tmp_path_factory):
    srv = start_mongo(tmp_path_factory.mktemp("secantus-shard1"))
    try:
        seed_shard1(srv)
        yield srv
    finally:
        srv.stop()


def sharded_toml(instance_id: str, uris) -> str:
    listed = ", ".join(json.dumps(u) for u in uris)
    return f"""
[[instances]]
id = "{instance_id}"
name = "{instance_id}"
region = "ap-guangzhou"
owner_uin = "{KEY_A.uin}"
replica_sets = [{listed}]
"""


@pytest.fixture(scope="module")
def dl_server(tmp_path_factory, mongo, shard1):
    body = default_body() + instance_toml(REPLICA, mongo.uri) + sharded_toml(SHARDED, [mongo.uri, shard1.uri])
    srv = start_server(tmp_path_factory.mktemp("mongobak-downloads"), body)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def replica_backup(dl_server):
    """A finished backup of REPLICA that no test deletes."""
    return take_backup(client(dl_server), REPLICA)


@pytest.fixture(scope="module")
def sharded_backup(dl_server):
    return take_backup(client(dl_server), SHARDED)


# -- end to end ------------------------------------------------------------------


def test_replica_set_download(dl_server, mongo, replica_backup):
    c = client(dl_server)
    before = shanghai_now()
    created = create_tasks(c, REPLICA, replica_backup, [f"{REPLICA}_0"])
    [status] = created.Tasks
    assert status.ReplicaSetId == f"{REPLICA}_0"
    assert status.Status in (0, 1, 2), status.Status
    tasks = wait_done(c, REPLICA, replica_backup, [f"{REPLICA}_0"])
    after = shanghai_now()
    assert list(tasks) == [f"{REPLICA}_0"]
    task, plain = tasks[f"{REPLICA}_0"]
    created_at = datetime.datetime.strptime(task.CreateTime, "%Y-%m-%d %H:%M:%S")
    assert before <= created_at <= after, (before, task.CreateTime, after)
    check_file(task, plain, replica_backup, source_documents(mongo))

    # Asked again: the same finished task, nothing packaged twice.
    again = create_tasks(c, REPLICA, replica_backup, [f"{REPLICA}_0"])
    assert [(t.ReplicaSetId, t.Status) for t in again.Tasks] == [(f"{REPLICA}_0", 2)]
    assert list(tasks_of(c, REPLICA, replica_backup)) == [f"{REPLICA}_0"]


def test_uncompressed_backup_downloads_the_same(start_mongobak, mongo):
    # [backups] compression = "none": the segments are plain BSON, and the
    # download task packages them into the same mongodump archive.
    body = '[backups]\ncompression = "none"\n' + default_body() + instance_toml(REPLICA, mongo.uri)
    srv = start_mongobak(body)
    c = client(srv)
    backup = take_backup(c, REPLICA)
    segments = [path for path in srv.stored_objects(f"backups/{REPLICA}/") if "/c0" in path]
    assert segments and all(path.endswith(".bson") for path in segments), segments
    create_tasks(c, REPLICA, backup, [f"{REPLICA}_0"])
    tasks = wait_done(c, REPLICA, backup, [f"{REPLICA}_0"])
    task, plain = tasks[f"{REPLICA}_0"]
    check_file(task, plain, backup, source_documents(mongo))


def test_sharded_download(dl_server, mongo, shard1, sharded_backup):
    c = client(dl_server)
    sets = [f"{SHARDED}_0", f"{SHARDED}_1"]
    created = create_tasks(c, SHARDED, sharded_backup, sets)
    assert [t.ReplicaSetId for t in created.Tasks] == sets
    assert all(t.Status in (0, 1, 2) for t in created.Tasks), created.to_json_string()
    tasks = wait_done(c, SHARDED, sharded_backup, sets)
    assert sorted(tasks) == sets
    sources = {f"{SHARDED}_0": source_documents(mongo), f"{SHARDED}_1": source_documents(shard1)}
    assert sources[sets[0]] != sources[sets[1]]
    for set_id in sets:
        task, plain = tasks[set_id]
        check_file(task, plain, sharded_backup, sources[set_id])
    assert tasks[sets[0]][1]["SHA256"] != tasks[sets[1]][1]["SHA256"]


# -- flattened parameters (GET) ---------------------------------------------------


def test_flattened_get_hmac_sha256(dl_server, mongo):
    # The SDK's GET + HmacSHA256 sends BackupSets.0.ReplicaSetId=...
    c = client(dl_server, sign="HmacSHA256", method="GET")
    name = take_backup(c, REPLICA)
    created = call(c, "CreateBackupDownloadTask", InstanceId=REPLICA, BackupName=name,
                   BackupSets=[{"ReplicaSetId": f"{REPLICA}_0"}])
    assert [t.ReplicaSetId for t in created.Tasks] == [f"{REPLICA}_0"]
    tasks = wait_done(c, REPLICA, name, [f"{REPLICA}_0"])
    task, plain = tasks[f"{REPLICA}_0"]
    check_file(task, plain, name, source_documents(mongo))

    # The seed page's spelling by hand, and the shorthand BackupSets.0=<id>:
    # both name the same task.
    for params in ({"BackupSets.0.ReplicaSetId": f"{REPLICA}_0"}, {"BackupSets.0": f"{REPLICA}_0"}):
        answer = v1_get(dl_server, KEY_A, "CreateBackupDownloadTask",
                        {"InstanceId": REPLICA, "BackupName": name, **params})
        assert "Error" not in answer, answer
        assert answer["Tasks"] == [{"ReplicaSetId": f"{REPLICA}_0", "Status": 2}], answer
    assert list(tasks_of(c, REPLICA, name)) == [f"{REPLICA}_0"]


def test_shorthand_backup_sets_of_a_cluster(dl_server, mongo, shard1):
    # BackupSets.0=<id>_0&BackupSets.1=<id>_1, as in the seed page's text.
    c = client(dl_server)
    name = take_backup(c, SHARDED)
    sets = [f"{SHARDED}_0", f"{SHARDED}_1"]
    answer = v1_get(dl_server, KEY_A, "CreateBackupDownloadTask",
                    {"InstanceId": SHARDED, "BackupName": name, "BackupSets.0": sets[0], "BackupSets.1": sets[1]})
    assert "Error" not in answer, answer
    assert [t["ReplicaSetId"] for t in answer["Tasks"]] == sets, answer
    tasks = wait_done(c, SHARDED, name, sets)
    check_file(*tasks[sets[0]], name, source_documents(mongo))
    check_file(*tasks[sets[1]], name, source_documents(shard1))
    # The flattened Describe with a Status filter lists both as done.
    listed = v1_get(dl_server, KEY_A, "DescribeBackupDownloadTask",
                    {"InstanceId": SHARDED, "BackupName": name, "Status.0": "2"})
    assert sorted(t["ReplicaSetId"] for t in listed["Tasks"]) == sets, listed


# -- errors ----------------------------------------------------------------------

# (id, key, region, instance, backup name ("" = the replica backup), sets, code)
CREATE_ERRORS = [
    ("unknown-instance", KEY_A, "ap-guangzhou", "cmgo-zzzz9999", "", ["cmgo-zzzz9999_0"],
     "InvalidParameterValue.NotFoundInstance"),
    ("other-accounts-instance", KEY_A, "ap-guangzhou", B_INSTANCE, "", [f"{B_INSTANCE}_0"],
     "InvalidParameterValue.NotFoundInstance"),
    ("called-by-other-account", KEY_B, "ap-guangzhou", REPLICA, "", [f"{REPLICA}_0"],
     "InvalidParameterValue.NotFoundInstance"),
    ("other-region", KEY_A, "ap-shanghai", REPLICA, "", [f"{REPLICA}_0"],
     "InvalidParameterValue.NotFoundInstance"),
    ("unknown-backup", KEY_A, "ap-guangzhou", REPLICA, f"{REPLICA}_2001-01-01 00:00", [f"{REPLICA}_0"],
     "InvalidParameterValue.BackupFileNotFound"),
    ("sub-account-not-allowed-the-action", KEY_A_DENIED, "ap-guangzhou", REPLICA, "", [f"{REPLICA}_0"],
     "InvalidParameter.PermissionDenied"),
    ("sub-account-describe-only", KEY_A_ONE, "ap-guangzhou", A_REPLICA, "", [f"{A_REPLICA}_0"],
     "InvalidParameter.PermissionDenied"),
    ("account-without-app-id", KEY_C, "ap-guangzhou", REPLICA, "", [f"{REPLICA}_0"],
     "InternalError.CheckAppIdFailed"),
    ("sub-account-of-disabled-account", KEY_D_SUB, "ap-guangzhou", REPLICA, "", [f"{REPLICA}_0"],
     "InternalError.CheckAppIdFailed"),
    ("replica-set-of-a-shard", KEY_A, "ap-guangzhou", REPLICA, "", [f"{REPLICA}_1"],
     "InvalidParameterValue.ReplicaNotFound"),
    ("replica-set-of-another-instance", KEY_A, "ap-guangzhou", REPLICA, "", [f"{SHARDED}_0"],
     "InvalidParameterValue.ReplicaNotFound"),
    ("one-unknown-among-known", KEY_A, "ap-guangzhou", REPLICA, "", [f"{REPLICA}_0", f"{REPLICA}_7"],
     "InvalidParameterValue.ReplicaNotFound"),
    ("empty-backup-sets", KEY_A, "ap-guangzhou", REPLICA, "", [], "InvalidParameterValue"),
]


def task_count(server, instance_id: str) -> int:
    return call(client(server), "DescribeBackupDownloadTask", InstanceId=instance_id).TotalCount


@pytest.mark.parametrize("key,region,instance_id,backup,sets,code", [e[1:] for e in CREATE_ERRORS],
                         ids=[e[0] for e in CREATE_ERRORS])
def test_create_errors(dl_server, replica_backup, key, region, instance_id, backup, sets, code):
    counts = {i: task_count(dl_server, i) for i in (REPLICA, SHARDED)}
    err = expect_error(code, create_tasks, client(dl_server, key, region=region), instance_id,
                       backup or replica_backup, sets)
    if code.endswith("NotFoundInstance"):
        assert instance_id in err.get_message(), err.get_message()
    if code.endswith("ReplicaNotFound"):
        unknown = next(s for s in sets if s != f"{REPLICA}_0")
        assert unknown in err.get_message(), err.get_message()
    # Nothing was queued.
    assert {i: task_count(dl_server, i) for i in (REPLICA, SHARDED)} == counts


@pytest.mark.parametrize(
    "params,missing",
    [
        ({"BackupName": "x", "BackupSets": [{"ReplicaSetId": f"{REPLICA}_0"}]}, "InstanceId"),
        ({"InstanceId": REPLICA, "BackupSets": [{"ReplicaSetId": f"{REPLICA}_0"}]}, "BackupName"),
        ({"InstanceId": REPLICA, "BackupName": "x"}, "BackupSets"),
        ({"InstanceId": REPLICA, "BackupName": "x", "BackupSets": [{}]}, "ReplicaSetId"),
    ],
    ids=["no-instance", "no-backup-name", "no-backup-sets", "set-without-id"],
)
def test_missing_parameters(dl_server, params, missing):
    err = expect_error("MissingParameter", call, client(dl_server), "CreateBackupDownloadTask", **params)
    assert missing in err.get_message(), err.get_message()


def test_backup_of_another_instance_or_deleted(dl_server, sharded_backup):
    c = client(dl_server)
    # A name of the cluster's backup, asked of the replica set.
    err = expect_error("InvalidParameterValue.BackupFileNotFound", create_tasks, c, REPLICA, sharded_backup,
                       [f"{REPLICA}_0"])
    assert sharded_backup in err.get_message(), err.get_message()
    # A deleted backup.
    name = take_backup(c, REPLICA)
    [backup] = [b for b in call(c, "DescribeDBBackups", InstanceId=REPLICA).BackupList if b.BackupName == name]
    call(c, "DeleteDBBackups", InstanceId=REPLICA, BackupIds=[backup.BackId])
    expect_error("InvalidParameterValue.BackupFileNotFound", create_tasks, c, REPLICA, name, [f"{REPLICA}_0"])


def test_describe_permissions(dl_server, replica_backup):
    # Describe* on cmgo-ord3* only: another instance is refused.
    one = client(dl_server, KEY_A_ONE)
    expect_error("InvalidParameter.PermissionDenied", call, one, "DescribeBackupDownloadTask", InstanceId=REPLICA)
    assert call(one, "DescribeBackupDownloadTask", InstanceId=A_REPLICA).TotalCount == 0
    expect_error("InvalidParameter.PermissionDenied", call, client(dl_server, KEY_A_DENIED),
                 "DescribeBackupDownloadTask", InstanceId=REPLICA)
    expect_error("InternalError.CheckAppIdFailed", call, client(dl_server, KEY_C),
                 "DescribeBackupDownloadTask", InstanceId=REPLICA)


def test_store_failure_is_an_internal_error(start_mongobak, mongo):
    # The metadata store fails under the call (another process renames its
    # table away, or makes it refuse rows): InternalError, with nothing of
    # the store in the message; the service works again once it is mended.
    srv = start_mongobak(default_body() + instance_toml(REPLICA, mongo.uri))
    c = client(srv)
    name = take_backup(c, REPLICA)
    if srv.metadata_url:
        # PostgreSQL's prepared statements follow a renamed table: refuse
        # every new task instead.
        break_store = "ALTER TABLE download_tasks ADD CONSTRAINT broken CHECK (false) NOT VALID"
        mend_store = "ALTER TABLE download_tasks DROP CONSTRAINT broken"
    else:
        break_store = "ALTER TABLE download_tasks RENAME TO download_tasks_away"
        mend_store = "ALTER TABLE download_tasks_away RENAME TO download_tasks"
    srv.metadata_sql(break_store)
    try:
        err = expect_error("InternalError", create_tasks, c, REPLICA, name, [f"{REPLICA}_0"])
        message = err.get_message().lower()
        for word in ("download_tasks", "sqlite", "postgres", "select", "insert", "constraint",
                     str(srv.data_dir).lower()):
            assert word not in message, err.get_message()
    finally:
        srv.metadata_sql(mend_store)
    created = create_tasks(c, REPLICA, name, [f"{REPLICA}_0"])
    assert [t.ReplicaSetId for t in created.Tasks] == [f"{REPLICA}_0"]
    wait_done(c, REPLICA, name, [f"{REPLICA}_0"])


# -- rate limit --------------------------------------------------------------------


def test_rate_limit_of_twenty_per_second(start_mongobak, mongo):
    # The default limit, 20 calls per second per account and action, as the
    # seed page documents for CreateBackupDownloadTask.
    srv = start_mongobak(default_body(rate_limits="") + instance_toml(REPLICA, mongo.uri))
    name = take_backup(client(srv), REPLICA)
    # Signed with HmacSHA256, whose random Nonce makes the identical calls
    # differ: identical TC3 calls within one second are one signature, and
    # all but the first would be refused as replays.
    c = client(srv, sign="HmacSHA256")
    request = models.CreateBackupDownloadTaskRequest()
    request.from_json_string(json.dumps(
        {"InstanceId": REPLICA, "BackupName": name, "BackupSets": [{"ReplicaSetId": f"{REPLICA}_0"}]}))
    outcomes = []
    started = time.monotonic()
    for _ in range(21):
        try:
            c.CreateBackupDownloadTask(request)
            outcomes.append("OK")
        except TencentCloudSDKException as err:
            outcomes.append(err.get_code())
    elapsed = time.monotonic() - started
    assert elapsed < 1.0, f"21 calls took {elapsed:.2f} s; the limit window is 1 s"
    assert outcomes == ["OK"] * 20 + ["RequestLimitExceeded"], outcomes
    # One task came of the twenty accepted calls.
    assert len(tasks_of(c, REPLICA, name)) == 1


def test_rate_limit_under_concurrent_calls(start_mongobak, mongo):
    # 21 calls at once from one account: 20 pass the limit, whatever their
    # outcome; calls that fail for other reasons count too. Another account
    # has its own budget.
    srv = start_mongobak(default_body(rate_limits="") + instance_toml(REPLICA, mongo.uri))
    start = threading.Barrier(21)

    def create(_):
        # HmacSHA256: a random Nonce each, so no call replays another.
        c = client(srv, KEY_B, sign="HmacSHA256")
        request = models.CreateBackupDownloadTaskRequest()
        request.from_json_string(json.dumps(
            {"InstanceId": B_INSTANCE, "BackupName": "none", "BackupSets": [{"ReplicaSetId": f"{B_INSTANCE}_0"}]}))
        start.wait(timeout=30)
        began = time.monotonic()
        try:
            c.CreateBackupDownloadTask(request)
            return "OK", began, time.monotonic()
        except TencentCloudSDKException as err:
            return err.get_code(), began, time.monotonic()

    with ThreadPoolExecutor(max_workers=21) as pool:
        results = list(pool.map(create, range(21)))
    first = min(r[1] for r in results)
    last = max(r[2] for r in results)
    assert last - first < 1.0, f"the calls took {last - first:.2f} s; the limit window is 1 s"
    counts = Counter(code for code, _, _ in results)
    assert counts == {"InvalidParameterValue.BackupFileNotFound": 20, "RequestLimitExceeded": 1}, counts
    # A has a budget of its own.
    expect_error("InvalidParameterValue.BackupFileNotFound", create_tasks, client(srv), REPLICA, "none",
                 [f"{REPLICA}_0"])


def test_archive_reader_crc():
    # The check value of CRC-64/XZ, which the reader's EOF checks rely on.
    assert crc64_xz(b"123456789") == 0x995DC9BBDF1939FA
