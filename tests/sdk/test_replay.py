"""Replayed signatures as the official Python SDK makes them.

With TC3 the SDK signs only `content-type;host`, the body and the second:
two calls with the same parameters within one second carry one signature.
mongobak passes the same read-only call twice (a client polling), refuses
the same state-changing call and the same signature aimed at another
action, and passes identical calls signed with HmacSHA256, whose random
Nonce makes every signature new.
"""

import json
import time

import pytest
from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.mongodb.v20190725 import models, mongodb_client

from mongobak_harness import KEY_A, closed_port_uri, default_body, instance_toml

INSTANCE = "cmgo-rply0001"


def client(server, sign="TC3-HMAC-SHA256"):
    hp = HttpProfile(endpoint=server.endpoint, protocol="http", reqTimeout=15)
    cp = ClientProfile(signMethod=sign, httpProfile=hp)
    return mongodb_client.MongodbClient(credential.Credential(KEY_A.secret_id, KEY_A.secret_key), "ap-guangzhou", cp)


def request(action: str, **params):
    built = getattr(models, f"{action}Request")()
    built.from_json_string(json.dumps(params))
    return built


def at_the_start_of_a_second():
    """Waits for a new second, so that the next calls share it."""
    time.sleep(1.0 - time.time() % 1.0)


def in_one_second(calls):
    """The outcomes of `calls()`, made within one second (tried again at
    the next second when a slow machine let them straddle two)."""
    for _ in range(5):
        at_the_start_of_a_second()
        second = int(time.time())
        outcomes = calls()
        if int(time.time()) == second:
            return outcomes
    pytest.fail("five tries at making the calls within one second failed")


def outcome(send, *args) -> str:
    try:
        send(*args)
        return "OK"
    except TencentCloudSDKException as err:
        assert err.get_code() != "AuthFailure.SignatureFailure" or "replayed" in err.get_message(), err
        return err.get_code()


@pytest.fixture
def srv(start_mongobak):
    return start_mongobak(default_body() + instance_toml(INSTANCE, closed_port_uri(30_000)))


def test_the_same_read_only_call_passes_twice_in_one_second(srv):
    c = client(srv)
    poll = request("DescribeDBBackups", InstanceId=INSTANCE)
    assert in_one_second(lambda: [outcome(c.DescribeDBBackups, poll) for _ in range(3)]) == ["OK"] * 3


def test_the_same_state_changing_call_passes_once(srv):
    c = client(srv)
    rules = request("SetBackupRules", InstanceId=INSTANCE, BackupMethod=0, BackupTime=3)
    outcomes = in_one_second(lambda: [outcome(c.SetBackupRules, rules) for _ in range(2)])
    assert outcomes == ["OK", "AuthFailure.SignatureFailure"]


def test_one_signature_for_two_actions_passes_for_the_first(srv):
    # The same body is a valid DescribeDBBackups and DescribeBackupRules:
    # the SDK signs both alike, since the action is no part of the signature.
    c = client(srv)
    backups = request("DescribeDBBackups", InstanceId=INSTANCE)
    rules = request("DescribeBackupRules", InstanceId=INSTANCE)
    outcomes = in_one_second(lambda: [outcome(c.DescribeDBBackups, backups), outcome(c.DescribeBackupRules, rules)])
    assert outcomes == ["OK", "AuthFailure.SignatureFailure"]
    # Signed anew in the next second, the call passes.
    at_the_start_of_a_second()
    assert outcome(c.DescribeBackupRules, rules) == "OK"


def test_hmac_sha256_calls_carry_a_nonce_of_their_own(srv):
    c = client(srv, sign="HmacSHA256")
    rules = request("SetBackupRules", InstanceId=INSTANCE, BackupMethod=0, BackupTime=3)
    assert in_one_second(lambda: [outcome(c.SetBackupRules, rules) for _ in range(3)]) == ["OK"] * 3
