"""DescribeDBInstanceNamespace through the official Python SDK, Node.js SDK
and tccli: the live databases and collections of a real MongoDB server
(SecantusDB), as a replica set and as a sharded cluster, every refused
parameter and caller, and a deployment that does not answer."""

import json
import shutil
import subprocess

import pytest

from mongobak_harness import (
    B_INSTANCE,
    KEY_A,
    KEY_A_DENIED,
    KEY_A_ONE,
    KEY_B,
    client_env,
    default_body,
    instance_toml,
    start_server,
)
from test_backups import TCCLI, call, client, expect_error, raw
from test_node_sdk import run_node

ACTION = "DescribeDBInstanceNamespace"
LIVE = "cmgo-ord3nsp1"  # the seeded server; KEY_A_ONE may describe cmgo-ord3*
DEAD = "cmgo-nsdead01"  # a closed port
SHARDED = "cmgo-nsshrd01"  # two "shards" that are the same server
ROUTED = "cmgo-nsmgos01"  # shards on closed ports, the seeded server as its mongos
HALF = "cmgo-nshalf01"  # the seeded server and a closed port


def sharded_toml(instance_id: str, replica_sets: list, mongos: str = None) -> str:
    uris = ", ".join(json.dumps(uri) for uri in replica_sets)
    text = f"""
[[instances]]
id = "{instance_id}"
name = "{instance_id}"
region = "ap-guangzhou"
owner_uin = "{KEY_A.uin}"
sharded = true
replica_sets = [{uris}]
"""
    if mongos:
        text += f"mongos = {json.dumps(mongos)}\n"
    return text


@pytest.fixture(scope="module")
def seeded(mongo):
    """The module's SecantusDB with a view (kept in shop.system.views) and
    stored JavaScript (shop.system.js) beside the seeded collections."""
    c = mongo.client()
    try:
        c.shop.command("create", "big_orders", viewOn="orders", pipeline=[{"$match": {"total": {"$gte": 100}}}])
        c.shop["system.js"].insert_one({"_id": "double", "value": "function (x) { return 2 * x; }"})
        raw_names = c.shop.list_collection_names()
        assert any(name.startswith("system.") for name in raw_names), raw_names
    finally:
        c.close()
    return mongo


@pytest.fixture(scope="module")
def ns_server(tmp_path_factory, seeded, dead_uri):
    body = (
        default_body()
        + instance_toml(LIVE, seeded.uri)
        + instance_toml(DEAD, dead_uri)
        + sharded_toml(SHARDED, [seeded.uri, seeded.uri])
        + sharded_toml(ROUTED, [dead_uri, dead_uri], mongos=seeded.uri)
        + sharded_toml(HALF, [seeded.uri, dead_uri])
    )
    srv = start_server(tmp_path_factory.mktemp("mongobak-namespaces"), body)
    yield srv
    srv.stop()


def namespaces(c, **params) -> tuple:
    response = call(c, ACTION, **params)
    return response.Databases, response.Collections


STYLES = [("TC3-HMAC-SHA256", "POST"), ("TC3-HMAC-SHA256", "GET"), ("HmacSHA256", "POST"), ("HmacSHA1", "GET")]


@pytest.mark.parametrize("sign,method", STYLES, ids=[f"{sign}-{method}" for sign, method in STYLES])
def test_databases_then_the_collections_of_one(ns_server, sign, method):
    c = client(ns_server, sign=sign, method=method)
    # admin, local and config are left out.
    assert namespaces(c, InstanceId=LIVE) == (["inventory", "shop"], [])
    assert namespaces(c, InstanceId=LIVE, DbName="") == (["inventory", "shop"], [])
    # Views are collections to list; system.* are not.
    assert namespaces(c, InstanceId=LIVE, DbName="shop") == (["shop"], ["big_orders", "customers", "orders"])
    assert namespaces(c, InstanceId=LIVE, DbName="inventory") == (["inventory"], ["items"])
    # A database that does not exist has no collections.
    assert namespaces(c, InstanceId=LIVE, DbName="nothere") == (["nothere"], [])
    assert namespaces(c, InstanceId=LIVE, DbName="订单") == (["订单"], [])


def test_the_answer_matches_the_sdk_model(ns_server):
    answer = raw(client(ns_server), ACTION, InstanceId=LIVE, DbName="shop")
    assert sorted(answer) == ["Collections", "Databases", "RequestId"], answer


def test_a_sharded_cluster(ns_server):
    c = client(ns_server)
    # Shard by shard, merged: each name once.
    assert namespaces(c, InstanceId=SHARDED) == (["inventory", "shop"], [])
    assert namespaces(c, InstanceId=SHARDED, DbName="shop") == (["shop"], ["big_orders", "customers", "orders"])
    # Through the mongos alone: the shards' closed ports are never tried.
    assert namespaces(c, InstanceId=ROUTED) == (["inventory", "shop"], [])
    assert namespaces(c, InstanceId=ROUTED, DbName="inventory") == (["inventory"], ["items"])


BAD_NAMES = [
    ("slash", "a/b"),
    ("backslash", "a\\b"),
    ("dot", "shop.orders"),
    ("space", "my shop"),
    ("quote", 'a"b'),
    ("dollar", "$cmd"),
    ("nul", "a\0b"),
    ("64-bytes", "x" * 64),
    ("64-bytes-in-22-characters", "订" * 22),
]


@pytest.mark.parametrize("name", [n for _, n in BAD_NAMES], ids=[i for i, _ in BAD_NAMES])
def test_bad_database_names(ns_server, name):
    err = expect_error("InvalidParameterValue", call, client(ns_server), ACTION, InstanceId=LIVE, DbName=name)
    assert "DbName" in err.get_message(), err.get_message()


def test_63_bytes_is_a_name(ns_server):
    assert namespaces(client(ns_server), InstanceId=LIVE, DbName="x" * 63) == (["x" * 63], [])


@pytest.mark.parametrize(
    "key,region,instance_id",
    [
        (KEY_A, "ap-guangzhou", "cmgo-zzzz9999"),
        (KEY_A, "ap-guangzhou", B_INSTANCE),
        (KEY_A, "ap-shanghai", LIVE),
        (KEY_B, "ap-guangzhou", LIVE),
    ],
    ids=["unknown", "other-account", "other-region", "called-by-other-account"],
)
def test_instance_not_found(ns_server, key, region, instance_id):
    c = client(ns_server, key, region=region)
    err = expect_error("InvalidParameterValue.NotFoundInstance", call, c, ACTION, InstanceId=instance_id)
    assert instance_id in err.get_message()


def test_missing_and_unknown_parameters(ns_server):
    c = client(ns_server)
    expect_error("MissingParameter", c.call_json, ACTION, {"DbName": "shop"})
    expect_error("UnknownParameter", c.call_json, ACTION, {"InstanceId": LIVE, "Collection": "orders"})


def test_sub_account_policies(ns_server):
    # Allowed only mongodb:DescribeDBBackups.
    expect_error("InvalidParameter.PermissionDenied", call, client(ns_server, KEY_A_DENIED), ACTION, InstanceId=LIVE)
    # Allowed mongodb:Describe* on cmgo-ord3* only.
    one = client(ns_server, KEY_A_ONE)
    assert namespaces(one, InstanceId=LIVE, DbName="inventory") == (["inventory"], ["items"])
    expect_error("InvalidParameter.PermissionDenied", call, one, ACTION, InstanceId=SHARDED)


def test_a_deployment_that_does_not_answer(ns_server, dead_uri):
    c = client(ns_server)
    port = dead_uri.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1]
    for params in ({}, {"DbName": "shop"}):
        err = expect_error("FailedOperation", call, c, ACTION, InstanceId=DEAD, **params)
        message = err.get_message()
        assert DEAD in message and f"{DEAD}_0" in message, message
        assert "mongodb://" not in message and port not in message, message
    # One shard down fails the whole listing, naming that shard.
    message = expect_error("FailedOperation", call, c, ACTION, InstanceId=HALF).get_message()
    assert f"{HALF}_1 " in message and f"{HALF}_0" not in message, message


def test_node_sdk(ns_server):
    node = shutil.which("node")
    assert node, "node is not on PATH"
    out = run_node(node, ns_server.endpoint, KEY_A, action=ACTION, params={"InstanceId": LIVE, "DbName": "shop"})
    assert out["ok"], out
    assert (out["response"]["Databases"], out["response"]["Collections"]) == (
        ["shop"], ["big_orders", "customers", "orders"])


def test_tccli(ns_server, tmp_path):
    assert TCCLI.exists(), f"{TCCLI} is missing"
    env = client_env(HOME=str(tmp_path))  # tccli writes $HOME/.tccli
    for name in ("TENCENTCLOUD_SECRET_ID", "TENCENTCLOUD_SECRET_KEY", "TENCENTCLOUD_REGION"):
        env.pop(name, None)
    proc = subprocess.run(
        [
            str(TCCLI), "mongodb", ACTION, "--InstanceId", LIVE,
            "--endpoint", ns_server.url, "--region", "ap-guangzhou",
            "--secretId", KEY_A.secret_id, "--secretKey", KEY_A.secret_key,
        ],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, f"tccli exited {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    out = json.loads(proc.stdout)
    assert (out["Databases"], out["Collections"]) == (["inventory", "shop"], [])
