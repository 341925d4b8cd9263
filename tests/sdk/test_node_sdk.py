"""The official Node.js SDK (tencentcloud-sdk-nodejs-mongodb) against mongobak,
driven through node_client.js."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mongobak_harness import (
    A_REPLICA,
    A_SHARDED,
    B_INSTANCE,
    B_NAME,
    KEY_A,
    KEY_A_DENIED,
    KEY_B,
    Key,
    client_env,
)

HERE = Path(__file__).resolve().parent
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

STYLES = [
    ("TC3-HMAC-SHA256", "POST"),
    ("TC3-HMAC-SHA256", "GET"),
    ("HmacSHA256", "GET"),
    ("HmacSHA1", "GET"),
    ("HmacSHA1", "POST"),
    ("HmacSHA256", "POST"),
]
STYLE_IDS = [f"{sign}-{method}" for sign, method in STYLES]


@pytest.fixture(scope="module")
def node():
    path = shutil.which("node")
    assert path, "node is not on PATH"
    assert (HERE / "node_modules" / "tencentcloud-sdk-nodejs-mongodb").is_dir(), "run npm ci in tests/sdk"
    return path


def run_node(node, endpoint, key: Key, *, sign="TC3-HMAC-SHA256", method="POST", region="ap-guangzhou",
             action="DescribeDBInstances", params=None, resolve_to=None, zero_nonce=False):
    env = client_env(
        MB_ENDPOINT=endpoint,
        MB_SECRET_ID=key.secret_id,
        MB_SECRET_KEY=key.secret_key,
        MB_REGION=region,
        MB_METHOD=method,
        MB_SIGN=sign,
        MB_ACTION=action,
        MB_PARAMS=json.dumps(params or {}),
    )
    if resolve_to:
        env["MB_RESOLVE_TO"] = resolve_to
    if zero_nonce:
        env["MB_ZERO_NONCE"] = "1"
    proc = subprocess.run(
        [node, str(HERE / "node_client.js")],
        cwd=HERE,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, f"node exited {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ok(result):
    assert result["ok"], result
    response = result["response"]
    assert UUID.match(response["RequestId"]), response
    return response


def error(result, code):
    assert not result["ok"], result
    assert result["code"] == code, result
    assert UUID.match(result["requestId"] or ""), result
    return result


@pytest.mark.parametrize("sign,method", STYLES, ids=STYLE_IDS)
def test_describe_all_styles(server, node, sign, method):
    response = ok(run_node(node, server.endpoint, KEY_A, sign=sign, method=method))
    assert response["TotalCount"] == 2
    details = response["InstanceDetails"]
    assert [d["InstanceId"] for d in details] == [A_SHARDED, A_REPLICA]
    sharded, replica = details
    assert sharded["ClusterType"] == 1
    assert [r["ReplicaSetId"] for r in sharded["ReplicaSets"]] == [f"{A_SHARDED}_0", f"{A_SHARDED}_1"]
    assert (sharded["Vip"], sharded["Vport"]) == ("10.0.1.21", 27018)
    assert replica["ClusterType"] == 0
    assert [r["ReplicaSetId"] for r in replica["ReplicaSets"]] == [f"{A_REPLICA}_0"]
    assert all(d["Region"] == "ap-guangzhou" for d in details)


@pytest.mark.parametrize("sign,method", STYLES, ids=STYLE_IDS)
def test_filters_all_styles(server, node, sign, method):
    # Node flattens lists (GET, v1) and sends `true`/`%20`-style encodings.
    response = ok(run_node(
        node, server.endpoint, KEY_A, sign=sign, method=method,
        params={"InstanceIds": [A_REPLICA, B_INSTANCE], "ClusterType": 0, "Limit": 5},
    ))
    assert response["TotalCount"] == 1
    assert [d["InstanceId"] for d in response["InstanceDetails"]] == [A_REPLICA]


@pytest.mark.parametrize("sign,method", [STYLES[0], STYLES[1], STYLES[3], STYLES[5]],
                         ids=[STYLE_IDS[0], STYLE_IDS[1], STYLE_IDS[3], STYLE_IDS[5]])
def test_non_ascii_search_key(server, node, sign, method):
    response = ok(run_node(node, server.endpoint, KEY_B, sign=sign, method=method,
                           params={"SearchKey": "订单 orders"}))
    assert [d["InstanceId"] for d in response["InstanceDetails"]] == [B_INSTANCE]
    assert response["InstanceDetails"][0]["InstanceName"] == B_NAME


@pytest.mark.parametrize("sign", ["TC3-HMAC-SHA256", "HmacSHA256"])
def test_real_service_name_in_endpoint(server, node, sign):
    # With a tencentcloudapi.com endpoint Node signs scope `mongodb` and the
    # host without its port; the name is resolved to the local server.
    endpoint = f"mongodb.tencentcloudapi.com:{server.port}"
    response = ok(run_node(node, endpoint, KEY_A, sign=sign, resolve_to="127.0.0.1"))
    assert [d["InstanceId"] for d in response["InstanceDetails"]] == [A_SHARDED, A_REPLICA]


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_v1_nonce_zero(server, node, method):
    # Node draws the v1 Nonce from 0..65535; 0 is a valid Nonce.
    response = ok(run_node(node, server.endpoint, KEY_A, sign="HmacSHA1", method=method, zero_nonce=True))
    assert [d["InstanceId"] for d in response["InstanceDetails"]] == [A_SHARDED, A_REPLICA]


def test_other_account(server, node):
    response = ok(run_node(node, server.endpoint, KEY_B, params={"InstanceIds": [A_REPLICA, A_SHARDED]}))
    assert (response["TotalCount"], response["InstanceDetails"]) == (0, [])


@pytest.mark.parametrize("sign,method", [STYLES[0], STYLES[2], STYLES[4]],
                         ids=[STYLE_IDS[0], STYLE_IDS[2], STYLE_IDS[4]])
def test_wrong_secret_key(server, node, sign, method):
    bad = Key(KEY_A.uin, KEY_A.secret_id, "not-the-key")
    error(run_node(node, server.endpoint, bad, sign=sign, method=method), "AuthFailure.SignatureFailure")


def test_errors(server, node):
    error(run_node(node, server.endpoint, KEY_A_DENIED), "InvalidParameter.PermissionDenied")
    error(run_node(node, server.endpoint, KEY_A, action="NoSuchAction"), "InvalidAction")
    error(run_node(node, server.endpoint, KEY_A, action="CreateDBInstance"), "UnsupportedOperation")
    error(run_node(node, server.endpoint, KEY_A, region=""), "MissingParameter")
    error(run_node(node, server.endpoint, KEY_A, params={"Limit": 0}),
          "InvalidParameterValue.LimitParaOutOfRange")
    result = error(run_node(node, server.endpoint, KEY_A, params={"Limit": "abc"}), "InvalidParameter")
    assert "Limit" in result["message"]
