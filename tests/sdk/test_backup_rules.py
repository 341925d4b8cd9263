"""Automatic backup rules through the official Python SDK and tccli:
DescribeBackupRules and SetBackupRules, every parameter's range, the
deprecated aliases, and who may read or change a rule."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mongobak_harness import A_REPLICA, A_SHARDED, B_INSTANCE, KEY_A, KEY_A_DENIED, KEY_B, client_env
from test_backups import call, client, expect_error

TCCLI = Path(sys.executable).parent / "tccli"

RULE_FIELDS = (
    "BackupSaveTime", "BackupTime", "BackupMethod", "BackupFrequency", "ActiveWeekdays", "LongTermInterval",
    "LongTermActiveDays", "LongTermExpiredDays", "OplogExpiredDays", "BackupVersion", "AlertThreshold",
)


def rule(c, instance_id=A_REPLICA) -> dict:
    response = call(c, "DescribeBackupRules", InstanceId=instance_id)
    fields = {name: getattr(response, name) for name in RULE_FIELDS}
    total = response.BackupTotalSize
    fields["BackupTotalSize"] = (total.SnapshotSize, total.OplogSize, total.FreeQuota)
    return fields


def test_an_instance_nobody_configured_has_the_default_rule(server):
    got = rule(client(server), A_SHARDED)
    assert got["BackupTime"] in range(0, 6), got
    assert {k: v for k, v in got.items() if k != "BackupTime"} == {
        "BackupSaveTime": 7,
        "BackupMethod": 0,
        "BackupFrequency": 24,
        "ActiveWeekdays": "0,1,2,3,4,5,6",
        "LongTermInterval": "",
        "LongTermActiveDays": "",
        "LongTermExpiredDays": 180,
        "OplogExpiredDays": 7,
        "BackupVersion": 1,
        "AlertThreshold": 100,
        "BackupTotalSize": (0, 0, 0),
    }


def test_set_then_describe(server):
    c = client(server)
    call(
        c, "SetBackupRules", InstanceId=A_REPLICA, BackupMethod=0, BackupTime=22, BackupFrequency=12,
        Notify=False, BackupRetentionPeriod=30, ActiveWeekdays="5,1,3", LongTermInterval="monthly",
        LongTermActiveDays="1,15", LongTermExpiredDays=365, OplogExpiredDays=14, BackupVersion=1,
        AlertThreshold=150,
    )
    want = {
        "BackupSaveTime": 30,
        "BackupTime": 22,
        "BackupMethod": 0,
        "BackupFrequency": 12,
        "ActiveWeekdays": "1,3,5",
        "LongTermInterval": "monthly",
        "LongTermActiveDays": "1,15",
        "LongTermExpiredDays": 365,
        "OplogExpiredDays": 14,
        "BackupVersion": 1,
        "AlertThreshold": 150,
        "BackupTotalSize": (0, 0, 0),
    }
    assert rule(c) == want
    assert c.call_json("DescribeBackupRules", {"InstanceId": A_REPLICA})["Response"]["Notify"] is False

    # Only the parameters given change; the deprecated names work.
    call(c, "SetBackupRules", InstanceId=A_REPLICA, BackupTime=0, LongTermUnit="weekly",
         LongTermActiveDays="0", AlarmWaterLevel=50)
    want.update(BackupTime=0, LongTermInterval="weekly", LongTermActiveDays="0", AlertThreshold=50)
    assert rule(c) == want

    # Long-term retention off again.
    call(c, "SetBackupRules", InstanceId=A_REPLICA, LongTermInterval="")
    want.update(LongTermInterval="", LongTermActiveDays="")
    assert rule(c) == want


def test_every_range_boundary_is_accepted(server):
    c = client(server)
    for params in (
        {"BackupTime": 0}, {"BackupTime": 23}, {"BackupFrequency": 24}, {"BackupRetentionPeriod": 7},
        {"BackupRetentionPeriod": 365}, {"OplogExpiredDays": 7}, {"OplogExpiredDays": 365},
        {"AlertThreshold": 50}, {"AlertThreshold": 300}, {"BackupVersion": 0},
        {"LongTermInterval": "weekly", "LongTermActiveDays": "0,6", "LongTermExpiredDays": 30},
        {"LongTermInterval": "monthly", "LongTermActiveDays": "31", "LongTermExpiredDays": 1075},
        {"ActiveWeekdays": "0"}, {"ActiveWeekdays": "6"},
    ):
        call(c, "SetBackupRules", InstanceId=A_SHARDED, **params)
        got = rule(c, A_SHARDED)
        for name, value in params.items():
            name = {"BackupRetentionPeriod": "BackupSaveTime"}.get(name, name)
            assert got[name] == value, (params, got)


BAD_RULES = [
    # (id, params, code, words the message must contain)
    ("method-physical", {"BackupMethod": 1}, "InvalidParameterValue", ["BackupMethod", "physical"]),
    ("method-snapshot", {"BackupMethod": 3}, "InvalidParameterValue", ["BackupMethod", "snapshot"]),
    ("method-7", {"BackupMethod": 7}, "InvalidParameterValue", ["BackupMethod"]),
    ("method-text", {"BackupMethod": "zero"}, "InvalidParameter", ["BackupMethod"]),
    ("time-24", {"BackupTime": 24}, "InvalidParameterValue", ["BackupTime"]),
    ("time-negative", {"BackupTime": -1}, "InvalidParameterValue", ["BackupTime"]),
    ("time-text", {"BackupTime": "noon"}, "InvalidParameter", ["BackupTime"]),
    ("frequency-6", {"BackupFrequency": 6}, "InvalidParameterValue", ["BackupFrequency"]),
    ("frequency-0", {"BackupFrequency": 0}, "InvalidParameterValue", ["BackupFrequency"]),
    ("notify-text", {"Notify": "maybe"}, "InvalidParameter", ["Notify"]),
    ("retention-6", {"BackupRetentionPeriod": 6}, "InvalidParameterValue", ["BackupRetentionPeriod"]),
    ("retention-366", {"BackupRetentionPeriod": 366}, "InvalidParameterValue", ["BackupRetentionPeriod"]),
    ("weekdays-7", {"ActiveWeekdays": "1,7"}, "InvalidParameterValue", ["ActiveWeekdays"]),
    ("weekdays-empty", {"ActiveWeekdays": ""}, "InvalidParameterValue", ["ActiveWeekdays"]),
    ("weekdays-names", {"ActiveWeekdays": "Mon,Tue"}, "InvalidParameterValue", ["ActiveWeekdays"]),
    ("weekdays-gap", {"ActiveWeekdays": "1,,2"}, "InvalidParameterValue", ["ActiveWeekdays"]),
    ("weekdays-number", {"ActiveWeekdays": 1}, "InvalidParameter", ["ActiveWeekdays"]),
    ("interval-daily", {"LongTermInterval": "daily", "LongTermActiveDays": "1"}, "InvalidParameterValue",
     ["LongTermInterval"]),
    ("unit-yearly", {"LongTermUnit": "yearly", "LongTermActiveDays": "1"}, "InvalidParameterValue",
     ["LongTermInterval"]),
    ("interval-and-unit-differ", {"LongTermInterval": "weekly", "LongTermUnit": "monthly",
                                  "LongTermActiveDays": "1"}, "InvalidParameter", ["LongTermInterval"]),
    ("weekly-day-7", {"LongTermInterval": "weekly", "LongTermActiveDays": "7"}, "InvalidParameterValue",
     ["LongTermActiveDays"]),
    ("monthly-day-0", {"LongTermInterval": "monthly", "LongTermActiveDays": "0"}, "InvalidParameterValue",
     ["LongTermActiveDays"]),
    ("monthly-day-32", {"LongTermInterval": "monthly", "LongTermActiveDays": "32"}, "InvalidParameterValue",
     ["LongTermActiveDays"]),
    ("interval-without-days", {"LongTermInterval": "weekly"}, "InvalidParameterValue", ["LongTermActiveDays"]),
    ("days-without-interval", {"LongTermActiveDays": "1"}, "InvalidParameterValue",
     ["LongTermActiveDays", "LongTermInterval"]),
    ("long-term-29", {"LongTermExpiredDays": 29}, "InvalidParameterValue", ["LongTermExpiredDays"]),
    ("long-term-1076", {"LongTermExpiredDays": 1076}, "InvalidParameterValue", ["LongTermExpiredDays"]),
    ("oplog-6", {"OplogExpiredDays": 6}, "InvalidParameterValue", ["OplogExpiredDays"]),
    ("oplog-366", {"OplogExpiredDays": 366}, "InvalidParameterValue", ["OplogExpiredDays"]),
    ("version-2", {"BackupVersion": 2}, "InvalidParameterValue", ["BackupVersion"]),
    ("threshold-49", {"AlertThreshold": 49}, "InvalidParameterValue", ["AlertThreshold"]),
    ("threshold-301", {"AlertThreshold": 301}, "InvalidParameterValue", ["AlertThreshold"]),
    ("water-level-301", {"AlarmWaterLevel": 301}, "InvalidParameterValue", ["AlertThreshold"]),
    ("threshold-and-level-differ", {"AlertThreshold": 100, "AlarmWaterLevel": 120}, "InvalidParameter",
     ["AlertThreshold"]),
    ("unknown-parameter", {"BackupHour": 3}, "UnknownParameter", ["BackupHour"]),
]


@pytest.mark.parametrize("params,code,words", [b[1:] for b in BAD_RULES], ids=[b[0] for b in BAD_RULES])
def test_bad_values_are_refused_and_change_nothing(server, params, code, words):
    c = client(server)
    before = rule(c)
    # Raw calls: the SDK's request model would refuse some of these types
    # before sending them.
    err = expect_error(code, c.call_json, "SetBackupRules", {"InstanceId": A_REPLICA, **params})
    message = err.get_message()
    for word in words:
        assert word in message, message
    assert rule(c) == before


def test_missing_instance_id(server):
    expect_error("MissingParameter", call, client(server), "DescribeBackupRules")
    err = expect_error("MissingParameter", call, client(server), "SetBackupRules", BackupTime=3)
    assert "InstanceId" in err.get_message()


@pytest.mark.parametrize("action,params", [("DescribeBackupRules", {}), ("SetBackupRules", {"BackupTime": 4})])
def test_rules_of_instances_the_caller_cannot_see(server, action, params):
    c = client(server)
    before = rule(c, A_REPLICA)
    for key, instance_id in ((KEY_A, "cmgo-zzzz9999"), (KEY_A, B_INSTANCE), (KEY_B, A_REPLICA)):
        err = expect_error("InvalidParameterValue.NotFoundInstance", call, client(server, key), action,
                           InstanceId=instance_id, **params)
        assert instance_id in err.get_message()
    # A sub-account allowed only DescribeDBBackups.
    expect_error("InvalidParameter.PermissionDenied", call, client(server, KEY_A_DENIED), action,
                 InstanceId=A_REPLICA, **params)
    assert rule(c, A_REPLICA) == before


def test_tccli_reads_a_rule(server, tmp_path):
    # The pinned tccli knows DescribeBackupRules but not SetBackupRules.
    call(client(server), "SetBackupRules", InstanceId=A_SHARDED, BackupTime=5, ActiveWeekdays="2,4",
         BackupRetentionPeriod=10)
    env = client_env(HOME=str(tmp_path))
    for name in ("TENCENTCLOUD_SECRET_ID", "TENCENTCLOUD_SECRET_KEY", "TENCENTCLOUD_REGION"):
        env.pop(name, None)
    common = ["--endpoint", server.url, "--region", "ap-guangzhou",
              "--secretId", KEY_A.secret_id, "--secretKey", KEY_A.secret_key]

    def tccli(*args):
        proc = subprocess.run([str(TCCLI), "mongodb", *args, *common], env=env, capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr + proc.stdout
        return json.loads(proc.stdout)

    got = tccli("DescribeBackupRules", "--InstanceId", A_SHARDED)
    assert (got["BackupTime"], got["ActiveWeekdays"], got["BackupSaveTime"]) == (5, "2,4", 10)
