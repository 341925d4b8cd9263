"""The official Python SDK (tencentcloud-sdk-python) against mongobak."""

import datetime
import json
import re
import time
import types

import pytest
from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.mongodb.v20180408 import mongodb_client as mongodb_client_2018
from tencentcloud.mongodb.v20180408 import models as models_2018
from tencentcloud.mongodb.v20190725 import models, mongodb_client

from mongobak_harness import (
    A_REPLICA,
    A_SHANGHAI,
    A_SHARDED,
    B_INSTANCE,
    B_NAME,
    KEY_A,
    KEY_A_DENIED,
    KEY_A_ONE,
    KEY_B,
    KEY_C,
    KEY_D,
    KEY_D_SUB,
    UNLIMITED,
    Key,
    accounts_toml,
    default_body,
)

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
SHANGHAI = datetime.timezone(datetime.timedelta(hours=8))

# (signMethod, reqMethod): every request style the SDK can send.
STYLES = [
    ("TC3-HMAC-SHA256", "POST"),
    ("TC3-HMAC-SHA256", "GET"),
    ("HmacSHA256", "GET"),
    ("HmacSHA1", "GET"),
    ("HmacSHA1", "POST"),
    ("HmacSHA256", "POST"),
]
STYLE_IDS = [f"{sign}-{method}" for sign, method in STYLES]


def client(
    server,
    key: Key,
    region="ap-guangzhou",
    sign="TC3-HMAC-SHA256",
    method="POST",
    module=mongodb_client,
    protocol="http",
    certification=None,
):
    hp = HttpProfile(
        endpoint=server.endpoint,
        protocol=protocol,
        reqMethod=method,
        reqTimeout=15,
        certification=certification,
    )
    cp = ClientProfile(signMethod=sign, httpProfile=hp)
    return module.MongodbClient(credential.Credential(key.secret_id, key.secret_key), region, cp)


def describe(c, **params):
    req = models.DescribeDBInstancesRequest()
    req.from_json_string(json.dumps(params))
    return c.DescribeDBInstances(req)


def ids(resp):
    return [d.InstanceId for d in resp.InstanceDetails]


def expect_error(code, fn, *args, **kwargs) -> TencentCloudSDKException:
    with pytest.raises(TencentCloudSDKException) as info:
        fn(*args, **kwargs)
    err = info.value
    assert err.get_code() == code, f"{err.get_code()}: {err.get_message()}"
    assert UUID.match(err.get_request_id() or ""), err.get_request_id()
    assert err.get_message(), "an error carries a message"
    return err


def check_a_guangzhou(resp):
    """A's two ap-guangzhou instances, with their real details."""
    assert UUID.match(resp.RequestId)
    assert resp.TotalCount == 2
    # Default order: CreateTime DESC (ties: ID DESC).
    assert ids(resp) == [A_SHARDED, A_REPLICA]
    sharded, replica = resp.InstanceDetails

    assert sharded.InstanceName == "analytics"
    assert sharded.ClusterType == 1
    assert sharded.Region == "ap-guangzhou"
    assert sharded.Status == 2
    assert [r.ReplicaSetId for r in sharded.ReplicaSets] == [f"{A_SHARDED}_0", f"{A_SHARDED}_1"]
    assert sharded.ReplicationSetNum == 2
    # First host of the first URI, credentials left out.
    assert (sharded.Vip, sharded.Vport) == ("10.0.1.21", 27018)
    assert "s3cr3t" not in json.dumps(json.loads(sharded.to_json_string()))

    assert replica.InstanceName == "orders"
    assert replica.ClusterType == 0
    assert replica.Region == "ap-guangzhou"
    assert replica.Status == 2
    assert [r.ReplicaSetId for r in replica.ReplicaSets] == [f"{A_REPLICA}_0"]
    assert (replica.Vip, replica.Vport) == ("10.0.0.11", 27017)

    # Registered at server start, shown in Asia/Shanghai.
    now = datetime.datetime.now(SHANGHAI).replace(tzinfo=None)
    for detail in resp.InstanceDetails:
        assert TIME.match(detail.CreateTime), detail.CreateTime
        created = datetime.datetime.strptime(detail.CreateTime, "%Y-%m-%d %H:%M:%S")
        assert abs((now - created).total_seconds()) < 600, (detail.CreateTime, now)


# -- success in every request style ---------------------------------------


@pytest.mark.parametrize("sign,method", STYLES, ids=STYLE_IDS)
def test_describe_all_styles(server, sign, method):
    c = client(server, KEY_A, sign=sign, method=method)
    check_a_guangzhou(describe(c))


@pytest.mark.parametrize("sign,method", STYLES, ids=STYLE_IDS)
def test_filters_all_styles(server, sign, method):
    # Lists and integers travel flattened (GET, v1) or as JSON (POST TC3).
    c = client(server, KEY_A, sign=sign, method=method)
    resp = describe(c, InstanceIds=[A_REPLICA, B_INSTANCE, A_SHANGHAI], ClusterType=0)
    assert (resp.TotalCount, ids(resp)) == (1, [A_REPLICA])
    resp = describe(c, Limit=1, Offset=1, OrderBy="InstanceName", OrderByType="DESC")
    assert (resp.TotalCount, ids(resp)) == (2, [A_SHARDED])
    resp = describe(c, SearchKey="analy", Status=[2])
    assert (resp.TotalCount, ids(resp)) == (1, [A_SHARDED])
    # Nested objects flatten to Tags.0.TagKey; registered instances have no tags.
    resp = describe(c, Tags=[{"TagKey": "env", "TagValue": "prod"}])
    assert (resp.TotalCount, ids(resp)) == (0, [])


@pytest.mark.parametrize("sign,method", STYLES, ids=STYLE_IDS)
def test_reserved_characters_all_styles(server, sign, method):
    # Characters with a meaning in queries, forms and signatures.
    c = client(server, KEY_A, sign=sign, method=method)
    resp = describe(c, SearchKey="a+b&c=d%20e/?#;")
    assert (resp.TotalCount, ids(resp)) == (0, [])
    resp = describe(c, SearchKey="10.0.0.11", OrderByType="asc")
    assert ids(resp) == [A_REPLICA]


@pytest.mark.parametrize("sign,method", STYLES, ids=STYLE_IDS)
def test_underscore_in_parameter_name(server, sign, method):
    # The Python SDK signs v1 keys with '_' as '.', but sends '_'; the
    # signature must still verify so that the parameter itself is judged.
    c = client(server, KEY_A, sign=sign, method=method)
    err = expect_error("UnknownParameter", c.call_json, "DescribeDBInstances", {"Bogus_Param": "x"})
    assert "Bogus_Param" in err.get_message()


@pytest.mark.parametrize("sign,method", STYLES, ids=STYLE_IDS)
def test_non_ascii_search_key_all_styles(server, sign, method):
    # UTF-8 and a space in a parameter: JSON escapes, '+' in forms and queries.
    c = client(server, KEY_B, sign=sign, method=method)
    resp = describe(c, SearchKey="订单 orders")
    assert (resp.TotalCount, ids(resp)) == (1, [B_INSTANCE])
    assert resp.InstanceDetails[0].InstanceName == B_NAME
    assert describe(c, SearchKey="订单  orders").TotalCount == 0


@pytest.mark.parametrize("sign,method", STYLES, ids=STYLE_IDS)
def test_call_json_all_styles(server, sign, method):
    c = client(server, KEY_A, sign=sign, method=method)
    resp = c.call_json("DescribeDBInstances", {"InstanceIds": [A_SHARDED]})["Response"]
    assert resp["TotalCount"] == 1
    detail = resp["InstanceDetails"][0]
    assert detail["InstanceId"] == A_SHARDED
    assert [r["ReplicaSetId"] for r in detail["ReplicaSets"]] == [f"{A_SHARDED}_0", f"{A_SHARDED}_1"]
    assert UUID.match(resp["RequestId"])


@pytest.mark.parametrize("sign,method", STYLES, ids=STYLE_IDS)
def test_profile_options_all_styles(server, sign, method):
    # Custom RequestClient, en-US language, kept-alive connection.
    hp = HttpProfile(endpoint=server.endpoint, protocol="http", reqMethod=method, keepAlive=True)
    cp = ClientProfile(signMethod=sign, httpProfile=hp, language="en-US", request_client="mongobak-tests_1.0")
    c = mongodb_client.MongodbClient(credential.Credential(KEY_A.secret_id, KEY_A.secret_key), "ap-guangzhou", cp)
    for _ in range(3):
        assert ids(describe(c)) == [A_SHARDED, A_REPLICA]


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_tc3_unsigned_payload(server, method):
    hp = HttpProfile(endpoint=server.endpoint, protocol="http", reqMethod=method)
    cp = ClientProfile(httpProfile=hp)
    cp.unsignedPayload = True
    c = mongodb_client.MongodbClient(credential.Credential(KEY_A.secret_id, KEY_A.secret_key), "ap-guangzhou", cp)
    assert ids(describe(c, ClusterType=1)) == [A_SHARDED]


@pytest.mark.parametrize("sign,method", [STYLES[0], STYLES[1], STYLES[2], STYLES[4]],
                         ids=[STYLE_IDS[0], STYLE_IDS[1], STYLE_IDS[2], STYLE_IDS[4]])
def test_endpoint_with_scheme(server, sign, method):
    # endpoint="http://127.0.0.1:PORT": the Host header (and the signed host)
    # then carries the scheme, as with tccli.
    hp = HttpProfile(endpoint=server.url, reqMethod=method)
    cp = ClientProfile(signMethod=sign, httpProfile=hp)
    c = mongodb_client.MongodbClient(credential.Credential(KEY_A.secret_id, KEY_A.secret_key), "ap-guangzhou", cp)
    assert ids(describe(c)) == [A_SHARDED, A_REPLICA]


def test_concurrent_calls(server):
    from concurrent.futures import ThreadPoolExecutor

    def call(n):
        sign, method = STYLES[n % len(STYLES)]
        key = KEY_A if n % 2 == 0 else KEY_B
        return key, ids(describe(client(server, key, sign=sign, method=method)))

    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(call, range(36)))
    for key, got in results:
        assert got == ([A_SHARDED, A_REPLICA] if key is KEY_A else [B_INSTANCE])


# -- filters ----------------------------------------------------------------


def test_filter_instance_ids(server):
    c = client(server, KEY_A)
    assert ids(describe(c, InstanceIds=[A_SHARDED])) == [A_SHARDED]
    assert ids(describe(c, InstanceIds=[A_REPLICA])) == [A_REPLICA]
    assert sorted(ids(describe(c, InstanceIds=[A_REPLICA, A_SHARDED]))) == sorted([A_REPLICA, A_SHARDED])
    assert ids(describe(c, InstanceIds=[A_REPLICA, A_REPLICA])) == [A_REPLICA]
    resp = describe(c, InstanceIds=["cmgo-zzzz9999"])
    assert (resp.TotalCount, ids(resp)) == (0, [])
    # An empty list filters nothing.
    assert describe(c, InstanceIds=[]).TotalCount == 2


@pytest.mark.parametrize(
    "cluster_type,expected",
    [(0, [A_REPLICA]), (1, [A_SHARDED]), (-1, [A_SHARDED, A_REPLICA])],
)
def test_filter_cluster_type(server, cluster_type, expected):
    resp = describe(client(server, KEY_A), ClusterType=cluster_type)
    assert resp.TotalCount == len(expected)
    assert ids(resp) == expected
    if cluster_type != -1:
        assert all(d.ClusterType == cluster_type for d in resp.InstanceDetails)


def test_paging(server):
    c = client(server, KEY_A)
    pages = []
    for offset in range(3):
        resp = describe(c, Limit=1, Offset=offset)
        assert resp.TotalCount == 2
        pages.append(ids(resp))
    assert pages == [[A_SHARDED], [A_REPLICA], []]
    resp = describe(c, Limit=100, Offset=0)
    assert ids(resp) == [A_SHARDED, A_REPLICA]
    resp = describe(c, Limit=2, Offset=10000)
    assert (resp.TotalCount, ids(resp)) == (2, [])


def test_ordering(server):
    c = client(server, KEY_A)
    assert ids(describe(c, OrderBy="CreateTime", OrderByType="ASC")) == [A_REPLICA, A_SHARDED]
    assert ids(describe(c, OrderBy="CreateTime", OrderByType="DESC")) == [A_SHARDED, A_REPLICA]
    # "analytics" < "orders"
    assert ids(describe(c, OrderBy="InstanceName", OrderByType="ASC")) == [A_SHARDED, A_REPLICA]
    assert ids(describe(c, OrderBy="InstanceName", OrderByType="DESC")) == [A_REPLICA, A_SHARDED]


def test_search_key(server):
    c = client(server, KEY_A)
    assert ids(describe(c, SearchKey="analy")) == [A_SHARDED]  # name
    assert ids(describe(c, SearchKey="ord3rs")) == [A_REPLICA]  # ID
    assert ids(describe(c, SearchKey="10.0.0.11")) == [A_REPLICA]  # Vip
    resp = describe(c, SearchKey="no-such-thing")
    assert (resp.TotalCount, ids(resp)) == (0, [])


def test_other_filters(server):
    c = client(server, KEY_A)
    # Registered instances run (Status 2), pay as you go, in project 0.
    assert describe(c, Status=[2]).TotalCount == 2
    assert describe(c, Status=[1, -2]).TotalCount == 0
    assert describe(c, PayMode=0).TotalCount == 2
    assert describe(c, PayMode=-1).TotalCount == 2  # all
    assert describe(c, PayMode=1).TotalCount == 0
    assert describe(c, ProjectIds=[0]).TotalCount == 2
    assert describe(c, ProjectIds=[1234]).TotalCount == 0
    assert describe(c, VpcId="vpc-12345678").TotalCount == 0
    assert describe(c, InstanceType=1).TotalCount == 2
    assert describe(c, InstanceType=-1).TotalCount == 2
    assert describe(c, InstanceType=3).TotalCount == 0  # read-only instances


# -- ownership, regions and sub-account resources --------------------------


def test_other_account_sees_only_its_own(server):
    c = client(server, KEY_B)
    resp = describe(c)
    assert (resp.TotalCount, ids(resp)) == (1, [B_INSTANCE])
    assert resp.InstanceDetails[0].InstanceName == B_NAME
    # Naming A's instances is not an error; they are simply absent.
    resp = describe(c, InstanceIds=[A_REPLICA, A_SHARDED, A_SHANGHAI])
    assert (resp.TotalCount, ids(resp)) == (0, [])
    resp = describe(c, SearchKey="analytics")
    assert (resp.TotalCount, ids(resp)) == (0, [])
    # And the other way round.
    resp = describe(client(server, KEY_A), InstanceIds=[B_INSTANCE])
    assert (resp.TotalCount, ids(resp)) == (0, [])


def test_region_scopes_the_list(server):
    resp = describe(client(server, KEY_A, region="ap-shanghai"))
    assert (resp.TotalCount, ids(resp)) == (1, [A_SHANGHAI])
    detail = resp.InstanceDetails[0]
    assert detail.Region == "ap-shanghai"
    assert [r.ReplicaSetId for r in detail.ReplicaSets] == [f"{A_SHANGHAI}_0"]
    assert (detail.Vip, detail.Vport) == ("10.0.2.11", 27017)
    # Naming a guangzhou instance from shanghai finds nothing.
    resp = describe(client(server, KEY_A, region="ap-shanghai"), InstanceIds=[A_REPLICA])
    assert resp.TotalCount == 0
    # A served region without instances.
    assert describe(client(server, KEY_A, region="ap-beijing")).TotalCount == 0
    assert describe(client(server, KEY_B, region="ap-shanghai")).TotalCount == 0


def test_restricted_sub_account_sees_its_instance_only(server):
    c = client(server, KEY_A_ONE)
    resp = describe(c)
    assert (resp.TotalCount, ids(resp)) == (1, [A_REPLICA])
    assert [r.ReplicaSetId for r in resp.InstanceDetails[0].ReplicaSets] == [f"{A_REPLICA}_0"]
    resp = describe(c, InstanceIds=[A_SHARDED])
    assert (resp.TotalCount, ids(resp)) == (0, [])
    # Its resource pattern names ap-guangzhou only.
    assert describe(client(server, KEY_A_ONE, region="ap-shanghai")).TotalCount == 0


def test_restricted_sub_account_v1(server):
    resp = describe(client(server, KEY_A_ONE, sign="HmacSHA256", method="GET"))
    assert ids(resp) == [A_REPLICA]


# -- authentication errors --------------------------------------------------


@pytest.mark.parametrize("sign,method", STYLES, ids=STYLE_IDS)
def test_wrong_secret_key(server, sign, method):
    bad = Key(KEY_A.uin, KEY_A.secret_id, KEY_A.secret_key[:-1] + "X")
    expect_error("AuthFailure.SignatureFailure", describe, client(server, bad, sign=sign, method=method))


@pytest.mark.parametrize("sign,method", [STYLES[0], STYLES[2]], ids=[STYLE_IDS[0], STYLE_IDS[2]])
def test_unknown_secret_id(server, sign, method):
    unknown = Key("0", "AKIDmbZ0nknown0Key0000000000000000000", "whatever")
    expect_error("AuthFailure.SecretIdNotFound", describe, client(server, unknown, sign=sign, method=method))


@pytest.mark.parametrize("skew", [-1000, -330, 330, 1000])
@pytest.mark.parametrize("sign,method", [STYLES[0], STYLES[3]], ids=[STYLE_IDS[0], STYLE_IDS[3]])
def test_timestamp_out_of_window(server, monkeypatch, sign, method, skew):
    from tencentcloud.common import abstract_client

    fake_time = types.SimpleNamespace(time=lambda: time.time() + skew)
    monkeypatch.setattr(abstract_client, "time", fake_time)
    expect_error("AuthFailure.SignatureExpire", describe, client(server, KEY_A, sign=sign, method=method))


@pytest.mark.parametrize("skew", [-270, 270])
def test_timestamp_within_window(server, monkeypatch, skew):
    from tencentcloud.common import abstract_client

    fake_time = types.SimpleNamespace(time=lambda: time.time() + skew)
    monkeypatch.setattr(abstract_client, "time", fake_time)
    assert describe(client(server, KEY_A)).TotalCount == 2


@pytest.mark.parametrize("sign,method", [STYLES[0], STYLES[2]], ids=[STYLE_IDS[0], STYLE_IDS[2]])
def test_temporary_credentials_refused(server, sign, method):
    hp = HttpProfile(endpoint=server.endpoint, protocol="http", reqMethod=method)
    cred = credential.Credential(KEY_A.secret_id, KEY_A.secret_key, token="temporary-session-token")
    c = mongodb_client.MongodbClient(cred, "ap-guangzhou", ClientProfile(signMethod=sign, httpProfile=hp))
    expect_error("AuthFailure.TokenFailure", describe, c)


def test_disabled_root_account_key_is_unknown(server):
    expect_error("AuthFailure.SecretIdNotFound", describe, client(server, KEY_D))
    expect_error("AuthFailure.SecretIdNotFound", describe, client(server, KEY_D, sign="HmacSHA1", method="GET"))


def test_disabled_root_sub_user_fails_app_id_check(server):
    expect_error("InternalError.CheckAppIdFailed", describe, client(server, KEY_D_SUB))


def test_account_without_app_id(server):
    expect_error("InternalError.CheckAppIdFailed", describe, client(server, KEY_C))
    expect_error("InternalError.CheckAppIdFailed", describe, client(server, KEY_C, sign="HmacSHA256", method="POST"))


def test_sub_account_action_denied(server):
    err = expect_error("InvalidParameter.PermissionDenied", describe, client(server, KEY_A_DENIED))
    assert "DescribeDBInstances" in err.get_message()
    expect_error(
        "InvalidParameter.PermissionDenied",
        describe,
        client(server, KEY_A_DENIED, sign="HmacSHA1", method="POST"),
    )


# -- action, version and region errors -------------------------------------


def test_unknown_action(server):
    c = client(server, KEY_A)
    expect_error("InvalidAction", c.call_json, "NoSuchAction", {})
    expect_error("InvalidAction", client(server, KEY_A, sign="HmacSHA256", method="GET").call_json, "NoSuchAction", {})


def test_unsupported_real_action(server):
    c = client(server, KEY_A)
    req = models.CreateDBInstanceRequest()
    req.from_json_string(json.dumps({"NodeNum": 3, "Memory": 4, "Volume": 100, "GoodsNum": 1, "Zone": "ap-guangzhou-3"}))
    expect_error("UnsupportedOperation", c.CreateDBInstance, req)
    req = models.IsolateDBInstanceRequest()
    req.InstanceId = A_REPLICA
    expect_error("UnsupportedOperation", c.IsolateDBInstance, req)
    expect_error("UnsupportedOperation", c.call_json, "TerminateDBInstances", {"InstanceId": A_REPLICA})


def test_wrong_version(server):
    c = client(server, KEY_A, module=mongodb_client_2018)
    expect_error("NoSuchVersion", c.DescribeDBInstances, models_2018.DescribeDBInstancesRequest())
    c = client(server, KEY_A, module=mongodb_client_2018, sign="HmacSHA256", method="GET")
    expect_error("NoSuchVersion", c.DescribeDBInstances, models_2018.DescribeDBInstancesRequest())


@pytest.mark.parametrize("sign,method", [STYLES[0], STYLES[1], STYLES[2]], ids=STYLE_IDS[:3])
def test_missing_region(server, sign, method):
    err = expect_error("MissingParameter", describe, client(server, KEY_A, region="", sign=sign, method=method))
    assert "Region" in err.get_message()


@pytest.mark.parametrize("sign,method", [STYLES[0], STYLES[4]], ids=[STYLE_IDS[0], STYLE_IDS[4]])
def test_unknown_region(server, sign, method):
    expect_error("UnsupportedRegion", describe, client(server, KEY_A, region="ap-atlantis", sign=sign, method=method))


# -- parameter errors -------------------------------------------------------


@pytest.mark.parametrize(
    "params,code",
    [
        ({"Limit": 0}, "InvalidParameterValue.LimitParaOutOfRange"),
        ({"Limit": 101}, "InvalidParameterValue.LimitParaOutOfRange"),
        ({"Offset": 10001}, "InvalidParameterValue.OffsetParaOutOfRange"),
        ({"Offset": -1}, "InvalidParameterValue.OffsetParaOutOfRange"),
        ({"ClusterType": 7}, "InvalidParameterValue.ClusterTypeError"),
        ({"ClusterType": -2}, "InvalidParameterValue.ClusterTypeError"),
        ({"PayMode": 2}, "InvalidParameterValue"),
        ({"PayMode": -2}, "InvalidParameterValue"),
        # Lists over their cap (the README's API reference).
        ({"InstanceIds": [A_REPLICA] * 101}, "InvalidParameterValue"),
        ({"Status": [2] * 11}, "InvalidParameterValue"),
        ({"ProjectIds": [0] * 101}, "InvalidParameterValue"),
    ],
)
@pytest.mark.parametrize("sign,method", [STYLES[0], STYLES[2]], ids=[STYLE_IDS[0], STYLE_IDS[2]])
def test_out_of_range_values(server, params, code, sign, method):
    expect_error(code, describe, client(server, KEY_A, sign=sign, method=method), **params)


def test_wrong_parameter_type(server):
    c = client(server, KEY_A)
    err = expect_error("InvalidParameter", c.call_json, "DescribeDBInstances", {"Limit": "abc"})
    assert "Limit" in err.get_message()
    err = expect_error("InvalidParameter", c.call_json, "DescribeDBInstances", {"InstanceIds": "cmgo-notalist"})
    assert "InstanceIds" in err.get_message()
    err = expect_error("InvalidParameter", c.call_json, "DescribeDBInstances", {"SearchKey": {"a": 1}})
    assert "SearchKey" in err.get_message()
    c = client(server, KEY_A, sign="HmacSHA1", method="GET")
    err = expect_error("InvalidParameter", c.call_json, "DescribeDBInstances", {"Offset": "ten"})
    assert "Offset" in err.get_message()


def test_unknown_parameter(server):
    c = client(server, KEY_A)
    err = expect_error("UnknownParameter", c.call_json, "DescribeDBInstances", {"Bogus": 1})
    assert "Bogus" in err.get_message()
    c = client(server, KEY_A, sign="HmacSHA256", method="POST")
    err = expect_error("UnknownParameter", c.call_json, "DescribeDBInstances", {"InstanceIdz": [A_REPLICA]})
    assert "InstanceIdz" in err.get_message()


def test_string_integers_are_accepted(server):
    # Flattened values are strings; JSON ones may be too.
    resp = client(server, KEY_A).call_json("DescribeDBInstances", {"Limit": "1", "ClusterType": "1"})
    assert [d["InstanceId"] for d in resp["Response"]["InstanceDetails"]] == [A_SHARDED]


# -- server configuration ---------------------------------------------------


def test_configured_timezone_and_regions(start_mongobak):
    body = UNLIMITED + accounts_toml() + f"""
[[instances]]
id = "cmgo-fra00001"
name = "frankfurt"
region = "eu-frankfurt"
owner_uin = "{KEY_A.uin}"
replica_sets = ["mongodb://db.example:27020/"]
"""
    srv = start_mongobak(body, {"timezone": "UTC", "regions": ["ap-guangzhou", "eu-frankfurt"]})
    resp = describe(client(srv, KEY_A, region="eu-frankfurt"))
    assert ids(resp) == ["cmgo-fra00001"]
    detail = resp.InstanceDetails[0]
    assert (detail.Vip, detail.Vport, detail.Region) == ("db.example", 27020, "eu-frankfurt")
    created = datetime.datetime.strptime(detail.CreateTime, "%Y-%m-%d %H:%M:%S")
    now_utc = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    assert abs((now_utc - created).total_seconds()) < 600, (detail.CreateTime, now_utc)
    assert describe(client(srv, KEY_A)).TotalCount == 0
    # A public region this server does not serve.
    expect_error("UnsupportedRegion", describe, client(srv, KEY_A, region="ap-shanghai"))


# -- rate limit -------------------------------------------------------------


def test_rate_limit(start_mongobak):
    srv = start_mongobak(default_body("[rate_limits]\nactions = { DescribeDBInstances = 5 }\n"))
    c_a = client(srv, KEY_A)
    c_sub = client(srv, KEY_A_ONE)
    c_b = client(srv, KEY_B)
    outcomes = []
    started = time.monotonic()
    for _ in range(12):
        try:
            describe(c_a)
            outcomes.append("OK")
        except TencentCloudSDKException as e:
            assert UUID.match(e.get_request_id() or "")
            outcomes.append(e.get_code())
    # The budget is per root account: A's sub-account shares it, B has its own.
    with pytest.raises(TencentCloudSDKException) as sub_error:
        describe(c_sub)
    b_total = describe(c_b).TotalCount
    elapsed = time.monotonic() - started
    assert elapsed < 1.0, f"the calls took {elapsed:.2f} s; the limit window is 1 s"
    assert outcomes == ["OK"] * 5 + ["RequestLimitExceeded"] * 7
    assert sub_error.value.get_code() == "RequestLimitExceeded"
    assert b_total == 1


# -- HTTPS ------------------------------------------------------------------


def _make_ca(common_name):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _make_server_cert(ca_key, ca_cert):
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mongobak test server")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


@pytest.fixture
def tls_server(tmp_path, start_mongobak):
    from cryptography.hazmat.primitives import serialization

    ca_key, ca_cert = _make_ca("mongobak test CA")
    key, cert = _make_server_cert(ca_key, ca_cert)
    _, other_ca = _make_ca("some other CA")
    files = {
        "ca": tmp_path / "ca.pem",
        "other_ca": tmp_path / "other-ca.pem",
        "cert": tmp_path / "server.pem",
        "key": tmp_path / "server-key.pem",
    }
    files["ca"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files["other_ca"].write_bytes(other_ca.public_bytes(serialization.Encoding.PEM))
    files["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files["key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    srv = start_mongobak(
        server_options={"tls_cert_file": str(files["cert"]), "tls_key_file": str(files["key"])},
        name="tls",
    )
    return srv, files


@pytest.mark.parametrize("sign,method", [STYLES[0], STYLES[2]], ids=[STYLE_IDS[0], STYLE_IDS[2]])
def test_https_with_trusted_ca(tls_server, sign, method):
    srv, files = tls_server
    assert srv.url.startswith("https://127.0.0.1:")
    c = client(srv, KEY_A, sign=sign, method=method, protocol="https", certification=str(files["ca"]))
    check_a_guangzhou(describe(c))
    expect_error(
        "AuthFailure.SignatureFailure",
        describe,
        client(
            srv,
            Key(KEY_A.uin, KEY_A.secret_id, "wrong"),
            protocol="https",
            certification=str(files["ca"]),
        ),
    )


def test_https_client_refuses_untrusted_server(tls_server):
    srv, files = tls_server
    for ca in (str(files["other_ca"]), None):  # another CA; the default bundle
        c = client(srv, KEY_A, protocol="https", certification=ca)
        with pytest.raises(TencentCloudSDKException) as info:
            describe(c)
        assert info.value.get_code() == "ClientNetworkError"
        assert "CERTIFICATE_VERIFY_FAILED" in info.value.get_message()


def test_plain_http_to_https_server_fails(tls_server):
    srv, _ = tls_server
    with pytest.raises(TencentCloudSDKException) as info:
        describe(client(srv, KEY_A, protocol="http"))
    assert info.value.get_code() in ("ClientNetworkError", "ServerNetworkError")
