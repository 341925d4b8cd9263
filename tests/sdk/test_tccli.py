"""tccli (tccli-intl-en) against mongobak."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mongobak_harness import (
    A_REPLICA,
    A_SHANGHAI,
    A_SHARDED,
    B_INSTANCE,
    B_NAME,
    KEY_A,
    KEY_A_DENIED,
    KEY_B,
    Key,
    client_env,
)

TCCLI = Path(sys.executable).parent / "tccli"
ERROR_LINE = re.compile(
    r"\[TencentCloudSDKException\] code:(?P<code>\S+) message:.* requestId:"
    r"(?P<rid>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
)


@pytest.fixture(scope="module")
def tccli_home(tmp_path_factory):
    # tccli writes $HOME/.tccli on first use.
    return tmp_path_factory.mktemp("tccli-home")


def tccli(home, server, key: Key, *args, region="ap-guangzhou", extra_env=None):
    assert TCCLI.exists(), f"{TCCLI} is missing"
    cmd = [str(TCCLI), "mongodb", "DescribeDBInstances", *args, "--endpoint", server.url]
    if region is not None:
        cmd += ["--region", region]
    if key is not None:
        cmd += ["--secretId", key.secret_id, "--secretKey", key.secret_key]
    env = client_env(HOME=str(home), **(extra_env or {}))
    for name in ("TENCENTCLOUD_SECRET_ID", "TENCENTCLOUD_SECRET_KEY", "TENCENTCLOUD_REGION"):
        if name not in (extra_env or {}):
            env.pop(name, None)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)


def output(proc):
    assert proc.returncode == 0, f"tccli exited {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    return json.loads(proc.stdout)


def failure(proc, code):
    assert proc.returncode == 255, f"tccli exited {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    match = ERROR_LINE.search(proc.stderr)
    assert match, proc.stderr
    assert match["code"] == code, proc.stderr
    return match


def test_describe(server, tccli_home):
    out = output(tccli(tccli_home, server, KEY_A))
    assert out["TotalCount"] == 2
    details = out["InstanceDetails"]
    assert [d["InstanceId"] for d in details] == [A_SHARDED, A_REPLICA]
    sharded, replica = details
    assert [r["ReplicaSetId"] for r in sharded["ReplicaSets"]] == [f"{A_SHARDED}_0", f"{A_SHARDED}_1"]
    assert (sharded["ClusterType"], sharded["Vip"], sharded["Vport"]) == (1, "10.0.1.21", 27018)
    assert [r["ReplicaSetId"] for r in replica["ReplicaSets"]] == [f"{A_REPLICA}_0"]
    assert (replica["ClusterType"], replica["Region"], replica["Status"]) == (0, "ap-guangzhou", 2)


def test_filters(server, tccli_home):
    out = output(tccli(tccli_home, server, KEY_A, "--InstanceIds", json.dumps([A_REPLICA, B_INSTANCE])))
    assert [d["InstanceId"] for d in out["InstanceDetails"]] == [A_REPLICA]
    out = output(tccli(tccli_home, server, KEY_A, "--ClusterType", "1"))
    assert [d["InstanceId"] for d in out["InstanceDetails"]] == [A_SHARDED]
    out = output(tccli(tccli_home, server, KEY_A, "--Limit", "1", "--Offset", "1"))
    assert (out["TotalCount"], [d["InstanceId"] for d in out["InstanceDetails"]]) == (2, [A_REPLICA])
    out = output(tccli(
        tccli_home, server, KEY_A, "--cli-unfold-argument", "--InstanceIds", A_SHARDED, A_REPLICA, "--SearchKey", "analy",
    ))
    assert [d["InstanceId"] for d in out["InstanceDetails"]] == [A_SHARDED]


def test_accounts_and_regions(server, tccli_home):
    out = output(tccli(tccli_home, server, KEY_A, region="ap-shanghai"))
    assert [d["InstanceId"] for d in out["InstanceDetails"]] == [A_SHANGHAI]
    out = output(tccli(tccli_home, server, KEY_B, "--SearchKey", "订单 orders"))
    assert [d["InstanceId"] for d in out["InstanceDetails"]] == [B_INSTANCE]
    assert out["InstanceDetails"][0]["InstanceName"] == B_NAME


def test_credentials_from_environment(server, tccli_home):
    env = {
        "TENCENTCLOUD_SECRET_ID": KEY_B.secret_id,
        "TENCENTCLOUD_SECRET_KEY": KEY_B.secret_key,
        "TENCENTCLOUD_REGION": "ap-guangzhou",
    }
    out = output(tccli(tccli_home, server, None, region=None, extra_env=env))
    assert [d["InstanceId"] for d in out["InstanceDetails"]] == [B_INSTANCE]


def test_wrong_secret_key(server, tccli_home):
    proc = tccli(tccli_home, server, Key(KEY_A.uin, KEY_A.secret_id, "wrong-secret-key"))
    failure(proc, "AuthFailure.SignatureFailure")
    assert proc.stdout.strip() == ""


def test_other_errors(server, tccli_home):
    failure(tccli(tccli_home, server, KEY_A_DENIED), "InvalidParameter.PermissionDenied")
    failure(tccli(tccli_home, server, KEY_A, region="ap-atlantis"), "UnsupportedRegion")
    failure(tccli(tccli_home, server, KEY_A, "--Offset", "10001"), "InvalidParameterValue.OffsetParaOutOfRange")
