"""RestoreDBInstance and FlashBackDBInstance through the official Python
SDK: a collection restored as it was at a second of the restorable window,
and the documents of some keys, each followed by its FlowId through
DescribeAsyncRequestInfo; a sub-account without the action and a
sub-account limited to another instance are refused."""

import time

import pytest
from tencentcloud.mongodb.v20190725 import models

from mongobak_harness import KEY_A_DENIED, KEY_A_ONE, default_body, instance_toml, start_server
from test_backups import call, client, expect_error, raw

INSTANCE = "cmgo-pitrsdk1"
DEADLINE = 90.0


def poll(what, answer, done):
    limit = time.monotonic() + DEADLINE
    while True:
        value = answer()
        if done(value):
            return value
        assert time.monotonic() < limit, f"{what} not done within {DEADLINE} s: {value}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def restore_server(tmp_path_factory, mongo):
    srv = start_server(tmp_path_factory.mktemp("mongobak-restore"), default_body() + instance_toml(INSTANCE, mongo.uri))
    yield srv
    srv.stop()


def succeeded(c, what, flow_id):
    """Waits for the FlowId's end through DescribeAsyncRequestInfo, which
    must be a success."""
    info = poll(
        what,
        lambda: raw(c, "DescribeAsyncRequestInfo", AsyncRequestId=str(flow_id)),
        lambda i: i["Status"] not in ("initial", "running"),
    )
    assert info["Status"] == "success", info


def window_end(c, mongo) -> str:
    """The last second of the window once a backup taken now and a write
    after it have opened one."""
    # The tailer starts with the server; give it a moment to begin first.
    time.sleep(2)
    created = raw(c, "CreateBackupDBInstance", InstanceId=INSTANCE, BackupMethod=0)
    poll(
        "the base backup",
        lambda: raw(c, "DescribeAsyncRequestInfo", AsyncRequestId=created["AsyncRequestId"]),
        lambda i: i["Status"] == "success",
    )
    # A write in a later second than the backup's end: the window ends
    # with the last second saved whole.
    time.sleep(1.1)
    client_ = mongo.client()
    try:
        client_.shop.after_base.insert_one({"n": 1})
    finally:
        client_.close()
    rules = poll(
        "a restorable window",
        lambda: raw(c, "DescribeBackupRules", InstanceId=INSTANCE),
        lambda r: r["RestoreWindow"],
    )
    return rules["RestoreWindow"][-1]["EndTime"]


def test_a_collection_restores_through_the_sdk_models(restore_server, mongo):
    c = client(restore_server)
    at = window_end(c, mongo)
    request = models.RestoreDBInstanceRequest()
    request.InstanceId = INSTANCE
    request.RestoreTime = at
    database = models.RestoreDatabases()
    database.Db = "shop"
    collection = models.RestoreCollection()
    collection.OldCollection = "orders"
    collection.NewCollection = "orders_sdk"
    database.Collections = [collection]
    request.Databases = [database]
    answer = c.RestoreDBInstance(request)
    assert isinstance(answer.FlowId, int) and answer.FlowId >= 100000000, answer
    succeeded(c, "the restore", answer.FlowId)
    client_ = mongo.client()
    try:
        source = sorted(client_.shop.orders.find(), key=lambda d: str(d["_id"]))
        restored = sorted(client_.shop.orders_sdk.find(), key=lambda d: str(d["_id"]))
    finally:
        client_.close()
    # Nothing wrote to orders since the backup: the restored copy is the same.
    assert restored == source and restored, (len(restored), len(source))

    # The same target again: it exists now.
    expect_error(
        "InvalidParameterValue",
        call,
        c,
        "RestoreDBInstance",
        InstanceId=INSTANCE,
        RestoreTime=at,
        Databases=[{"Db": "shop", "Collections": [{"OldCollection": "orders", "NewCollection": "orders_sdk"}]}],
    )


def test_keys_flash_back_through_the_sdk_models(restore_server, mongo):
    c = client(restore_server)
    at = window_end(c, mongo)
    client_ = mongo.client()
    try:
        some = list(client_.shop.orders.find().sort("_id", 1).limit(3))
    finally:
        client_.close()
    assert some, "the seeded orders"
    request = models.FlashBackDBInstanceRequest()
    request.InstanceId = INSTANCE
    request.TargetFlashbackTime = at
    database = models.FlashbackDatabase()
    database.DBName = "shop"
    collection = models.FlashbackCollection()
    collection.CollectionName = "orders"
    collection.TargetResultCollectionName = "orders_keys"
    collection.FilterKey = "_id"
    keys = []
    for document in some:
        key = models.FBKeyValue()
        key.Key = "_id"
        key.Value = str(document["_id"])
        keys.append(key)
    collection.KeyValues = keys
    database.Collections = [collection]
    request.TargetDatabases = [database]
    answer = c.FlashBackDBInstance(request)
    assert isinstance(answer.FlowId, int) and answer.FlowId >= 100000000, answer
    succeeded(c, "the flashback", answer.FlowId)
    client_ = mongo.client()
    try:
        flashed = list(client_.shop.orders_keys.find().sort("_id", 1))
    finally:
        client_.close()
    # Nothing wrote to orders since the backup: the keys' documents as they are.
    assert flashed == some


def test_sub_accounts_without_the_action_are_refused(restore_server):
    body = dict(
        InstanceId=INSTANCE,
        RestoreTime="2026-01-01 00:00:00",
        Databases=[{"Db": "shop", "Collections": [{"OldCollection": "orders", "NewCollection": "x"}]}],
    )
    # Allowed only mongodb:DescribeDBBackups.
    expect_error("InvalidParameter.PermissionDenied", call, client(restore_server, KEY_A_DENIED), "RestoreDBInstance", **body)
    # Allowed mongodb:Describe* on cmgo-ord3* only: not this action.
    expect_error("InvalidParameter.PermissionDenied", call, client(restore_server, KEY_A_ONE), "RestoreDBInstance", **body)
    flashback = dict(
        InstanceId=INSTANCE,
        TargetFlashbackTime="2026-01-01 00:00:00",
        TargetDatabases=[{"DBName": "shop", "Collections": [{"CollectionName": "orders", "KeyValues": [{"Value": "1"}]}]}],
    )
    expect_error("InvalidParameter.PermissionDenied", call, client(restore_server, KEY_A_DENIED), "FlashBackDBInstance", **flashback)
    expect_error("InvalidParameter.PermissionDenied", call, client(restore_server, KEY_A_ONE), "FlashBackDBInstance", **flashback)
