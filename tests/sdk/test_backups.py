"""Backups through the official Python SDK and tccli: CreateBackupDBInstance,
DescribeAsyncRequestInfo, DescribeDBBackups, DeleteDBBackups and
ModifyBackupExpireTime, backing up a real MongoDB server (SecantusDB)."""

import datetime
import json
import re
import subprocess
import sys
import threading
import time
import urllib.request
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict

import pytest
from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.mongodb.v20190725 import models, mongodb_client

from mongobak_harness import (
    A_REPLICA,
    A_SHANGHAI,
    B_INSTANCE,
    BACKUP_INSTANCE,
    DEAD_INSTANCE,
    KEY_A,
    KEY_A_DENIED,
    KEY_A_ONE,
    KEY_B,
    Key,
    client_env,
    closed_port_uri,
    default_body,
    instance_toml,
    resend_if_replayed,
    start_server,
)

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
DIGITS = re.compile(r"^\d+$")
SHANGHAI = datetime.timezone(datetime.timedelta(hours=8))
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
FAR_FUTURE = "2099-01-01 00:00:00"
UNKNOWN_ID = 987654321
# How long one backup of the small seeded server may take.
BACKUP_DEADLINE = 60.0
POLL_INTERVAL = 0.1
TCCLI = Path(sys.executable).parent / "tccli"


def name_pattern(instance_id: str) -> "re.Pattern[str]":
    """`<id>_YYYY-MM-DD HH:MM`, with `-N` when that minute's name was taken."""
    return re.compile(rf"^{re.escape(instance_id)}_(\d{{4}}-\d{{2}}-\d{{2}} \d{{2}}:\d{{2}})(?:-(\d+))?$")


def client(server, key: Key = KEY_A, region="ap-guangzhou", sign="TC3-HMAC-SHA256", method="POST"):
    hp = HttpProfile(endpoint=server.endpoint, protocol="http", reqMethod=method, reqTimeout=15)
    cp = ClientProfile(signMethod=sign, httpProfile=hp)
    return mongodb_client.MongodbClient(credential.Credential(key.secret_id, key.secret_key), region, cp)


def call(c, action: str, **params):
    """One call through the SDK's request and response models; the
    response must carry no field the model does not know."""
    request = getattr(models, f"{action}Request")()
    request.from_json_string(json.dumps(params))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        response = resend_if_replayed(getattr(c, action), request)
    useless = [str(w.message) for w in caught if "useless" in str(w.message)]
    assert not useless, f"{action}: fields the SDK models do not know: {useless}"
    assert UUID.match(response.RequestId), response.RequestId
    return response


def raw(c, action: str, **params) -> dict:
    """The `Response` object as sent (with fields the models leave out)."""
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


def shanghai_now() -> datetime.datetime:
    """Now in Asia/Shanghai, naive, to the second."""
    return datetime.datetime.now(SHANGHAI).replace(tzinfo=None, microsecond=0)


def parse_time(text: str) -> datetime.datetime:
    assert isinstance(text, str) and TIME.match(text), repr(text)
    return datetime.datetime.strptime(text, TIME_FORMAT)


def wait_done(c, async_request_id: str, deadline: float = BACKUP_DEADLINE):
    """Polls DescribeAsyncRequestInfo until the request ends; returns the
    model of its last answer and every status seen."""
    seen = []
    limit = time.monotonic() + deadline
    while True:
        info = call(c, "DescribeAsyncRequestInfo", AsyncRequestId=async_request_id)
        if not seen or seen[-1] != info.Status:
            seen.append(info.Status)
        if info.Status not in ("initial", "running"):
            return info, seen
        assert time.monotonic() < limit, f"request {async_request_id} still {info.Status} after {deadline} s"
        time.sleep(POLL_INTERVAL)


def listed(c, instance_id: str, **params) -> list:
    response = call(c, "DescribeDBBackups", InstanceId=instance_id, **params)
    assert isinstance(response.TotalCount, int)
    return response.BackupList


def by_id(c, instance_id: str, back_id: int):
    matches = [b for b in listed(c, instance_id) if b.BackId == back_id]
    assert len(matches) <= 1
    return matches[0] if matches else None


def take_backup(c, instance_id=BACKUP_INSTANCE, **params):
    """A finished backup: (async request id, its BackupInfo model)."""
    created = call(c, "CreateBackupDBInstance", InstanceId=instance_id, BackupMethod=0, **params)
    info, _ = wait_done(c, created.AsyncRequestId)
    assert info.Status == "success", raw(c, "DescribeAsyncRequestInfo", AsyncRequestId=created.AsyncRequestId)
    name = raw(c, "DescribeAsyncRequestInfo", AsyncRequestId=created.AsyncRequestId)["BackupName"]
    matches = [b for b in listed(c, instance_id) if b.BackupName == name]
    assert len(matches) == 1, (name, [b.BackupName for b in listed(c, instance_id)])
    return created.AsyncRequestId, matches[0]


def stored_segments(server, instance_id: str, back_id: int) -> Dict[str, int]:
    """The compressed segments of a backup in the server's storage
    (`backups/<instance>/<BackId>/`), with their sizes."""
    stored = server.stored_objects(f"backups/{instance_id}/{back_id}/")
    return {path: size for path, size in stored.items() if path.endswith(".bson.zst")}


@pytest.fixture(scope="module")
def kept_backup(backup_server):
    """A backup kept forever that no test deletes."""
    _, backup = take_backup(client(backup_server), BackupRemark="kept", BackupRetentionDays=-2)
    return backup


def test_backup_total_size_and_storage_metrics(backup_server, kept_backup):
    c = client(backup_server)
    total = call(c, "DescribeBackupRules", InstanceId=BACKUP_INSTANCE).BackupTotalSize
    assert total.SnapshotSize > 0 and total.OplogSize >= 0 and total.FreeQuota == 0
    # At least the kept backup (BackupSize is in KB, rounded up).
    assert total.SnapshotSize + total.OplogSize > (kept_backup.BackupSize - 1) * 1024
    # Per instance only on the admin listener; the API listener's /metrics
    # names no instance.
    with urllib.request.urlopen(f"{backup_server.admin_url}/metrics", timeout=10) as response:
        metrics = response.read().decode()
    gauge = re.search(rf'^mongobak_backup_stored_bytes{{instance="{BACKUP_INSTANCE}"}} (\d+)', metrics, re.M)
    assert gauge and int(gauge.group(1)) > (kept_backup.BackupSize - 1) * 1024, metrics
    with urllib.request.urlopen(f"{backup_server.url}/metrics", timeout=10) as response:
        public = response.read().decode()
    assert "cmgo-" not in public, public


# -- the full flow through the SDK models ----------------------------------


def test_backup_flow(backup_server, mongo):
    c = client(backup_server)
    remark = "before the upgrade: 升级前 & <v2>"
    before = shanghai_now()
    created = call(c, "CreateBackupDBInstance", InstanceId=BACKUP_INSTANCE, BackupMethod=0, BackupRemark=remark)
    assert isinstance(created.AsyncRequestId, str) and DIGITS.match(created.AsyncRequestId), created.AsyncRequestId

    info, seen = wait_done(c, created.AsyncRequestId)
    after = shanghai_now()
    assert info.Status == "success", seen
    assert set(seen) <= {"initial", "running", "success"}, seen
    started, ended = parse_time(info.StartTime), parse_time(info.EndTime)
    assert before <= started <= ended <= after, (before, info.StartTime, info.EndTime, after)

    extra = raw(c, "DescribeAsyncRequestInfo", AsyncRequestId=created.AsyncRequestId)
    assert (extra["Status"], extra["StartTime"], extra["EndTime"]) == ("success", info.StartTime, info.EndTime)
    assert (extra["Progress"], extra["FailureReason"]) == (100, "")
    name = extra["BackupName"]
    match = name_pattern(BACKUP_INSTANCE).match(name)
    assert match, name
    # Named after the minute it was requested, in Asia/Shanghai.
    minute = datetime.datetime.strptime(match[1], "%Y-%m-%d %H:%M")
    assert before.replace(second=0) <= minute <= after, (before, name, after)

    # DescribeDBBackups shows it, every field typed as documented.
    response = call(c, "DescribeDBBackups", InstanceId=BACKUP_INSTANCE)
    assert response.TotalCount == len(response.BackupList) >= 1
    [backup] = [b for b in response.BackupList if b.BackupName == name]
    assert backup.InstanceId == BACKUP_INSTANCE
    assert (backup.BackupType, backup.BackupMethod, backup.Status) == (1, 0, 2)
    assert backup.BackupDesc == remark
    assert isinstance(backup.BackupSize, int) and backup.BackupSize > 0, backup.BackupSize
    assert isinstance(backup.BackId, int) and backup.BackId > 0, backup.BackId
    assert (backup.StartTime, backup.EndTime) == (info.StartTime, info.EndTime)
    # No retention asked for: the configured 7 days.
    assert parse_time(backup.DeleteTime) == ended + datetime.timedelta(days=7), backup.DeleteTime
    assert (backup.BackupRegion, backup.RestoreTime) == ("", "")
    # BackupSize is in KB: the stored segments, rounded up.
    segments = stored_segments(backup_server, BACKUP_INSTANCE, backup.BackId)
    assert segments, "no stored data"
    assert backup.BackupSize == -(-sum(segments.values()) // 1024), backup.BackupSize

    # The method filter: 0 (logical) and 2 (all) list it, 1 and 3 do not.
    for method in (0, 2):
        assert backup.BackId in [b.BackId for b in listed(c, BACKUP_INSTANCE, BackupMethod=method)]
    for method in (1, 3):
        response = call(c, "DescribeDBBackups", InstanceId=BACKUP_INSTANCE, BackupMethod=method)
        assert (response.TotalCount, response.BackupList) == (0, [])

    # A second backup: a new name, with a suffix if the minute is the same.
    _, second = take_backup(c)
    second_match = name_pattern(BACKUP_INSTANCE).match(second.BackupName)
    assert second_match, second.BackupName
    if second_match[1] == match[1]:
        assert second_match[2] == str(int(match[2] or 1) + 1), (name, second.BackupName)
    else:
        assert second_match[2] is None, second.BackupName
    assert second.BackId != backup.BackId

    # Limit and Offset page through the same list; TotalCount ignores them.
    full = call(c, "DescribeDBBackups", InstanceId=BACKUP_INSTANCE)
    everything = [b.BackId for b in full.BackupList]
    assert full.TotalCount == len(everything) >= 2
    assert len(set(everything)) == len(everything)
    one_by_one = []
    for offset in range(len(everything)):
        page = call(c, "DescribeDBBackups", InstanceId=BACKUP_INSTANCE, Limit=1, Offset=offset)
        assert page.TotalCount == len(everything)
        one_by_one += [b.BackId for b in page.BackupList]
    assert one_by_one == everything
    page = call(c, "DescribeDBBackups", InstanceId=BACKUP_INSTANCE, Limit=2, Offset=1)
    assert [b.BackId for b in page.BackupList] == everything[1:3]
    page = call(c, "DescribeDBBackups", InstanceId=BACKUP_INSTANCE, Limit=100)
    assert [b.BackId for b in page.BackupList] == everything
    page = call(c, "DescribeDBBackups", InstanceId=BACKUP_INSTANCE, Offset=len(everything))
    assert (page.TotalCount, page.BackupList) == (len(everything), [])

    # A new expiry for the first backup; an unknown ID is reported back.
    expired = call(
        c, "ModifyBackupExpireTime", InstanceId=BACKUP_INSTANCE, ExpireTime=FAR_FUTURE,
        BackupIds=[backup.BackId, UNKNOWN_ID],
    )
    assert expired.FailedBackups == [UNKNOWN_ID]
    assert by_id(c, BACKUP_INSTANCE, backup.BackId).DeleteTime == FAR_FUTURE
    assert by_id(c, BACKUP_INSTANCE, second.BackId).DeleteTime == second.DeleteTime

    # Deleted: no longer listed, and a second deletion finds nothing.
    deleted = call(c, "DeleteDBBackups", InstanceId=BACKUP_INSTANCE, BackupIds=[backup.BackId])
    assert json.loads(deleted.to_json_string()) == {"RequestId": deleted.RequestId}
    after_delete = call(c, "DescribeDBBackups", InstanceId=BACKUP_INSTANCE)
    assert [b.BackId for b in after_delete.BackupList] == [i for i in everything if i != backup.BackId]
    assert after_delete.TotalCount == len(everything) - 1
    # Its data is gone too; the other backup's stays.
    assert stored_segments(backup_server, BACKUP_INSTANCE, backup.BackId) == {}
    assert stored_segments(backup_server, BACKUP_INSTANCE, second.BackId)
    err = expect_error(
        "InvalidParameterValue", call, c, "DeleteDBBackups", InstanceId=BACKUP_INSTANCE, BackupIds=[backup.BackId]
    )
    assert str(backup.BackId) in err.get_message()
    # Nor can its expiry change.
    expired = call(
        c, "ModifyBackupExpireTime", InstanceId=BACKUP_INSTANCE, ExpireTime=FAR_FUTURE, BackupIds=[backup.BackId]
    )
    assert expired.FailedBackups == [backup.BackId]
    # The source server was only read.
    client_ = mongo.client()
    try:
        assert client_["shop"].orders.count_documents({}) == mongo.seeded["shop.orders"]
    finally:
        client_.close()


@pytest.mark.parametrize(
    "days,kept_for",
    [(-2, None), (-1, 7), (0, 7), (1, 1), (7300, 7300)],
    ids=["forever", "long-term-rule", "rule", "one-day", "max"],
)
def test_retention_days(backup_server, days, kept_for):
    c = client(backup_server)
    _, backup = take_backup(c, BackupRetentionDays=days)
    if kept_for is None:
        assert backup.DeleteTime == ""
    else:
        assert parse_time(backup.DeleteTime) == parse_time(backup.EndTime) + datetime.timedelta(days=kept_for)
    call(c, "DeleteDBBackups", InstanceId=BACKUP_INSTANCE, BackupIds=[backup.BackId])


def test_remark_of_256_characters(backup_server):
    # The limit counts characters: 256 three-byte characters are accepted.
    c = client(backup_server)
    remark = "备" * 255 + "x"
    _, backup = take_backup(c, BackupRemark=remark)
    assert backup.BackupDesc == remark
    call(c, "DeleteDBBackups", InstanceId=BACKUP_INSTANCE, BackupIds=[backup.BackId])


def test_expired_backup_is_not_listed(backup_server):
    c = client(backup_server)
    _, backup = take_backup(c)
    expire = shanghai_now() + datetime.timedelta(seconds=3)
    expire_text = expire.strftime(TIME_FORMAT)
    result = call(c, "ModifyBackupExpireTime", InstanceId=BACKUP_INSTANCE, ExpireTime=expire_text,
                  BackupIds=[backup.BackId])
    assert result.FailedBackups == []
    assert by_id(c, BACKUP_INSTANCE, backup.BackId).DeleteTime == expire_text
    limit = time.monotonic() + 15
    while by_id(c, BACKUP_INSTANCE, backup.BackId) is not None:
        assert time.monotonic() < limit, f"backup {backup.BackId} still listed after {expire_text}"
        time.sleep(POLL_INTERVAL)
    # Gone at its expiry, not before.
    assert datetime.datetime.now(SHANGHAI).replace(tzinfo=None) >= expire
    expect_error("InvalidParameterValue", call, c, "DeleteDBBackups", InstanceId=BACKUP_INSTANCE,
                 BackupIds=[backup.BackId])
    result = call(c, "ModifyBackupExpireTime", InstanceId=BACKUP_INSTANCE, ExpireTime=FAR_FUTURE,
                  BackupIds=[backup.BackId])
    assert result.FailedBackups == [backup.BackId]


# -- flattened integer lists (GET and form bodies) ---------------------------


@pytest.mark.parametrize(
    "sign,method",
    [("HmacSHA256", "GET"), ("HmacSHA1", "POST"), ("TC3-HMAC-SHA256", "GET")],
    ids=["HmacSHA256-GET", "HmacSHA1-POST", "TC3-HMAC-SHA256-GET"],
)
def test_flattened_backup_ids(backup_server, sign, method):
    # BackupIds travel as BackupIds.0=..&BackupIds.1=..; integers as text.
    c = client(backup_server, sign=sign, method=method)
    json_client = client(backup_server)
    _, first = take_backup(c, BackupRemark="a+b&c=d %20 备份")
    assert first.BackupDesc == "a+b&c=d %20 备份"
    _, second = take_backup(c)
    ids = [first.BackId, second.BackId]

    response = call(c, "DescribeDBBackups", InstanceId=BACKUP_INSTANCE, BackupMethod=0, Limit=100, Offset=0)
    assert set(ids) <= {b.BackId for b in response.BackupList}
    page = call(c, "DescribeDBBackups", InstanceId=BACKUP_INSTANCE, Limit=1, Offset=1)
    assert (page.TotalCount, len(page.BackupList)) == (response.TotalCount, 1)
    assert page.BackupList[0].BackId == response.BackupList[1].BackId

    expire = "2098-06-30 12:34:56"
    result = call(c, "ModifyBackupExpireTime", InstanceId=BACKUP_INSTANCE, ExpireTime=expire,
                  BackupIds=[first.BackId, UNKNOWN_ID, second.BackId, UNKNOWN_ID + 1])
    assert result.FailedBackups == [UNKNOWN_ID, UNKNOWN_ID + 1]
    for back_id in ids:
        assert by_id(json_client, BACKUP_INSTANCE, back_id).DeleteTime == expire

    # One unknown ID: nothing is deleted.
    expect_error("InvalidParameterValue", call, c, "DeleteDBBackups", InstanceId=BACKUP_INSTANCE,
                 BackupIds=[first.BackId, UNKNOWN_ID])
    assert by_id(json_client, BACKUP_INSTANCE, first.BackId) is not None
    call(c, "DeleteDBBackups", InstanceId=BACKUP_INSTANCE, BackupIds=ids)
    remaining = {b.BackId for b in listed(json_client, BACKUP_INSTANCE)}
    assert not remaining & set(ids), remaining


# -- a backup that fails -------------------------------------------------------


def test_failed_backup(backup_server, dead_uri):
    c = client(backup_server)
    dead_address = dead_uri.split("://", 1)[1].split("/", 1)[0]
    created = call(c, "CreateBackupDBInstance", InstanceId=DEAD_INSTANCE, BackupMethod=0, BackupRemark="doomed")
    info, seen = wait_done(c, created.AsyncRequestId, deadline=30)
    assert info.Status == "failed", seen
    assert parse_time(info.StartTime) <= parse_time(info.EndTime)

    extra = raw(c, "DescribeAsyncRequestInfo", AsyncRequestId=created.AsyncRequestId)
    reason = extra["FailureReason"]
    # Names the replica set, the address and the refused connection.
    assert "cannot connect" in reason and f"{DEAD_INSTANCE}_0" in reason, reason
    assert dead_address in reason and "refused" in reason.lower(), reason
    assert extra["Progress"] < 100
    assert name_pattern(DEAD_INSTANCE).match(extra["BackupName"]), extra["BackupName"]

    # Failed backups are not listed, and do not block the next one.
    response = call(c, "DescribeDBBackups", InstanceId=DEAD_INSTANCE)
    assert (response.TotalCount, response.BackupList) == (0, [])
    again = call(c, "CreateBackupDBInstance", InstanceId=DEAD_INSTANCE, BackupMethod=0)
    assert again.AsyncRequestId != created.AsyncRequestId
    info, seen = wait_done(c, again.AsyncRequestId, deadline=30)
    assert info.Status == "failed", seen
    assert call(c, "DescribeDBBackups", InstanceId=DEAD_INSTANCE).TotalCount == 0


# -- a second backup while one is queued or running ---------------------------

SLOW_INSTANCE = "cmgo-slow0001"
SLOW_SECONDS = 4
QUEUED_INSTANCE = "cmgo-queu0001"


def test_second_backup_while_queued_or_running(start_mongobak):
    # One runner slot. SLOW_INSTANCE's backup waits SLOW_SECONDS for a server
    # that refuses connections, so it stays running that long; meanwhile
    # QUEUED_INSTANCE's backup cannot start and stays queued.
    body = (
        "[backups]\nconcurrency = 1\n"
        + default_body()
        + instance_toml(SLOW_INSTANCE, closed_port_uri(SLOW_SECONDS * 1000))
        + instance_toml(QUEUED_INSTANCE, closed_port_uri(300))
    )
    srv = start_mongobak(body)
    c = client(srv)

    slow = call(c, "CreateBackupDBInstance", InstanceId=SLOW_INSTANCE, BackupMethod=0)
    limit = time.monotonic() + 10
    while (status := call(c, "DescribeAsyncRequestInfo", AsyncRequestId=slow.AsyncRequestId).Status) != "running":
        assert status == "initial" and time.monotonic() < limit, status
        time.sleep(POLL_INTERVAL)
    running_since = time.monotonic()

    queued = call(c, "CreateBackupDBInstance", InstanceId=QUEUED_INSTANCE, BackupMethod=0)
    info = raw(c, "DescribeAsyncRequestInfo", AsyncRequestId=queued.AsyncRequestId)
    assert (info["Status"], info["StartTime"], info["EndTime"], info["Progress"]) == ("initial", "", "", 0), info

    # Refused for the queued and for the running one.
    for instance_id in (QUEUED_INSTANCE, SLOW_INSTANCE):
        err = expect_error("InvalidParameterValue.StatusAbnormal", call, c, "CreateBackupDBInstance",
                           InstanceId=instance_id, BackupMethod=0)
        assert instance_id in err.get_message()

    # Both are listed as running (Status 1), without an end.
    [running] = listed(c, SLOW_INSTANCE)
    assert (running.Status, running.EndTime, running.DeleteTime) == (1, "", ""), running
    parse_time(running.StartTime)
    [waiting] = listed(c, QUEUED_INSTANCE)
    assert (waiting.Status, waiting.EndTime) == (1, ""), waiting
    # A running or queued backup cannot be deleted.
    err = expect_error("InvalidParameterValue.StatusAbnormal", call, c, "DeleteDBBackups",
                       InstanceId=SLOW_INSTANCE, BackupIds=[running.BackId])
    assert str(running.BackId) in err.get_message()
    expect_error("InvalidParameterValue.StatusAbnormal", call, c, "DeleteDBBackups",
                 InstanceId=QUEUED_INSTANCE, BackupIds=[waiting.BackId])
    # Everything above relied on the slow backup still running.
    assert time.monotonic() - running_since < SLOW_SECONDS, "too slow to test while the backup runs"

    info, seen = wait_done(c, slow.AsyncRequestId, deadline=SLOW_SECONDS + 30)
    assert info.Status == "failed", seen
    first, seen = wait_done(c, queued.AsyncRequestId, deadline=30)
    assert first.Status == "failed", seen
    # It ran only after the slow one ended.
    assert parse_time(first.StartTime) >= parse_time(info.EndTime)

    # Once it has ended, the next one is accepted; same minute, new name.
    first_name = raw(c, "DescribeAsyncRequestInfo", AsyncRequestId=queued.AsyncRequestId)["BackupName"]
    again = call(c, "CreateBackupDBInstance", InstanceId=QUEUED_INSTANCE, BackupMethod=0)
    second_name = raw(c, "DescribeAsyncRequestInfo", AsyncRequestId=again.AsyncRequestId)["BackupName"]
    first_match = name_pattern(QUEUED_INSTANCE).match(first_name)
    second_match = name_pattern(QUEUED_INSTANCE).match(second_name)
    assert first_match and first_match[2] is None, first_name
    assert second_match, second_name
    if second_match[1] == first_match[1]:
        assert second_name == first_name + "-2"
    else:
        assert second_match[2] is None, second_name
    info, seen = wait_done(c, again.AsyncRequestId, deadline=30)
    assert info.Status == "failed", seen


def test_backup_interrupted_by_a_stop(tmp_path):
    # A backup still running at SIGTERM ends failed, does not hold up the
    # stop, and the instance takes a new backup after a restart.
    body = default_body() + instance_toml(SLOW_INSTANCE, closed_port_uri(60_000))
    srv = start_server(tmp_path / "mongobak", body)
    try:
        c = client(srv)
        created = call(c, "CreateBackupDBInstance", InstanceId=SLOW_INSTANCE, BackupMethod=0)
        limit = time.monotonic() + 10
        while call(c, "DescribeAsyncRequestInfo", AsyncRequestId=created.AsyncRequestId).Status != "running":
            assert time.monotonic() < limit
            time.sleep(POLL_INTERVAL)
        stopping = time.monotonic()
        srv.stop()
        assert time.monotonic() - stopping < 5
        assert srv.proc.returncode == 0, srv.stderr_tail()
    finally:
        srv.stop()
    srv = start_server(tmp_path / "mongobak", body)  # the same data folder
    try:
        c = client(srv)
        info = raw(c, "DescribeAsyncRequestInfo", AsyncRequestId=created.AsyncRequestId)
        assert info["Status"] == "failed", info
        assert "stopped" in info["FailureReason"], info
        parse_time(info["EndTime"])
        assert call(c, "DescribeDBBackups", InstanceId=SLOW_INSTANCE).TotalCount == 0
        again = call(c, "CreateBackupDBInstance", InstanceId=SLOW_INSTANCE, BackupMethod=0)
        assert again.AsyncRequestId != created.AsyncRequestId
    finally:
        srv.stop()


# -- concurrent requests ---------------------------------------------------------


def concurrent_creates(server, instance_ids):
    """CreateBackupDBInstance for each ID at once: an AsyncRequestId or
    "code: message" each."""
    start = threading.Barrier(len(instance_ids))

    def create(instance_id):
        # Not through call(): catching warnings is not thread-safe. Signed
        # with HmacSHA256, whose random Nonce makes identical calls differ:
        # identical TC3 calls within one second are one signature, and all
        # but the first would be refused as replays.
        c = client(server, sign="HmacSHA256")
        request = models.CreateBackupDBInstanceRequest()
        request.from_json_string(json.dumps({"InstanceId": instance_id, "BackupMethod": 0}))
        start.wait(timeout=30)
        try:
            return c.CreateBackupDBInstance(request).AsyncRequestId
        except TencentCloudSDKException as err:
            return f"{err.get_code()}: {err.get_message()}"

    with ThreadPoolExecutor(max_workers=len(instance_ids)) as pool:
        return list(pool.map(create, instance_ids))


def outcomes(results) -> dict:
    """How many requests were accepted, and how many failed with each code."""
    return dict(Counter("accepted" if DIGITS.match(r) else r.split(":", 1)[0] for r in results))


def test_concurrent_creates_of_different_instances(start_mongobak):
    # Each instance has no backup yet: every request is accepted.
    instance_ids = [f"cmgo-many{i:04d}" for i in range(12)]
    srv = start_mongobak(default_body() + "".join(instance_toml(i, closed_port_uri(300)) for i in instance_ids))
    results = concurrent_creates(srv, instance_ids)
    assert outcomes(results) == {"accepted": len(instance_ids)}
    c = client(srv)
    for instance_id in instance_ids:
        assert call(c, "DescribeDBBackups", InstanceId=instance_id).TotalCount <= 1


def test_concurrent_creates_of_one_instance(start_mongobak):
    # Twelve requests for each of four instances at once: one per instance
    # is accepted; the others find its backup queued or running.
    instance_ids = [f"cmgo-busy{i:04d}" for i in range(4)]
    srv = start_mongobak(default_body() + "".join(instance_toml(i, closed_port_uri(30_000)) for i in instance_ids))
    results = concurrent_creates(srv, instance_ids * 12)
    got = {i: outcomes(results[n::len(instance_ids)]) for n, i in enumerate(instance_ids)}
    want = {i: {"accepted": 1, "InvalidParameterValue.StatusAbnormal": 11} for i in instance_ids}
    assert got == want
    c = client(srv)
    for instance_id in instance_ids:
        assert len(listed(c, instance_id)) == 1


# -- bad values ----------------------------------------------------------------

FUTURE_IDS = {"ExpireTime": FAR_FUTURE, "BackupIds": [1]}

BAD_VALUES = [
    # (id, action, params, code, words the message must contain)
    ("method-physical", "CreateBackupDBInstance", {"BackupMethod": 1}, "InvalidParameterValue",
     ["BackupMethod", "physical"]),
    ("method-snapshot", "CreateBackupDBInstance", {"BackupMethod": 3}, "InvalidParameterValue",
     ["BackupMethod", "snapshot"]),
    ("method-2", "CreateBackupDBInstance", {"BackupMethod": 2}, "InvalidParameterValue", ["BackupMethod"]),
    ("method-negative", "CreateBackupDBInstance", {"BackupMethod": -1}, "InvalidParameterValue", ["BackupMethod"]),
    ("method-missing", "CreateBackupDBInstance", {}, "MissingParameter", ["BackupMethod"]),
    ("remark-257", "CreateBackupDBInstance", {"BackupMethod": 0, "BackupRemark": "x" * 257},
     "InvalidParameterValue", ["BackupRemark"]),
    ("remark-257-chars", "CreateBackupDBInstance", {"BackupMethod": 0, "BackupRemark": "备" * 257},
     "InvalidParameterValue", ["BackupRemark"]),
    ("retention-minus-3", "CreateBackupDBInstance", {"BackupMethod": 0, "BackupRetentionDays": -3},
     "InvalidParameterValue", ["BackupRetentionDays"]),
    ("retention-7301", "CreateBackupDBInstance", {"BackupMethod": 0, "BackupRetentionDays": 7301},
     "InvalidParameterValue", ["BackupRetentionDays"]),
    ("limit-0", "DescribeDBBackups", {"Limit": 0}, "InvalidParameterValue.LimitParaOutOfRange", ["Limit"]),
    ("limit-101", "DescribeDBBackups", {"Limit": 101}, "InvalidParameterValue.LimitParaOutOfRange", ["Limit"]),
    ("offset-10001", "DescribeDBBackups", {"Offset": 10001}, "InvalidParameterValue.OffsetParaOutOfRange",
     ["Offset"]),
    ("offset-negative", "DescribeDBBackups", {"Offset": -1}, "InvalidParameterValue.OffsetParaOutOfRange",
     ["Offset"]),
    ("describe-method-5", "DescribeDBBackups", {"BackupMethod": 5}, "InvalidParameterValue", ["BackupMethod"]),
    ("delete-unknown-id", "DeleteDBBackups", {"BackupIds": [UNKNOWN_ID]}, "InvalidParameterValue",
     ["BackupIds", str(UNKNOWN_ID)]),
    ("delete-no-ids", "DeleteDBBackups", {"BackupIds": []}, "InvalidParameterValue", ["BackupIds"]),
    ("delete-ids-missing", "DeleteDBBackups", {}, "MissingParameter", ["BackupIds"]),
    ("expire-date-only", "ModifyBackupExpireTime", {"ExpireTime": "2099-01-01", "BackupIds": [1]},
     "InvalidParameterValue.TimeFormatErr", ["ExpireTime"]),
    ("expire-iso", "ModifyBackupExpireTime", {"ExpireTime": "2099-01-01T00:00:00", "BackupIds": [1]},
     "InvalidParameterValue.TimeFormatErr", ["ExpireTime"]),
    ("expire-month-13", "ModifyBackupExpireTime", {"ExpireTime": "2099-13-01 00:00:00", "BackupIds": [1]},
     "InvalidParameterValue.TimeFormatErr", ["ExpireTime"]),
    ("expire-past", "ModifyBackupExpireTime", {"ExpireTime": "2020-01-01 00:00:00", "BackupIds": [1]},
     "InvalidParameterValue", ["ExpireTime"]),
    ("expire-no-ids", "ModifyBackupExpireTime", {"ExpireTime": FAR_FUTURE, "BackupIds": []},
     "InvalidParameterValue", ["BackupIds"]),
]


@pytest.mark.parametrize("action,params,code,words", [b[1:] for b in BAD_VALUES], ids=[b[0] for b in BAD_VALUES])
def test_bad_values(backup_server, action, params, code, words):
    c = client(backup_server)
    before = [b.BackId for b in listed(c, BACKUP_INSTANCE)]
    err = expect_error(code, call, c, action, InstanceId=BACKUP_INSTANCE, **params)
    for word in words:
        assert word in err.get_message(), err.get_message()
    # Nothing was queued, deleted or changed.
    assert [b.BackId for b in listed(c, BACKUP_INSTANCE)] == before


INSTANCE_ACTIONS = [
    ("CreateBackupDBInstance", {"BackupMethod": 0}),
    ("DescribeDBBackups", {}),
    ("DeleteDBBackups", {"BackupIds": [1]}),
    ("ModifyBackupExpireTime", FUTURE_IDS),
]
ELSEWHERE = [
    # (id, key, region, instance)
    ("unknown", KEY_A, "ap-guangzhou", "cmgo-zzzz9999"),
    ("other-account", KEY_A, "ap-guangzhou", B_INSTANCE),
    ("other-region", KEY_A, "ap-guangzhou", A_SHANGHAI),
    ("called-by-other-account", KEY_B, "ap-guangzhou", BACKUP_INSTANCE),
    ("called-in-other-region", KEY_A, "ap-shanghai", BACKUP_INSTANCE),
]


@pytest.mark.parametrize("action,params", INSTANCE_ACTIONS, ids=[a for a, _ in INSTANCE_ACTIONS])
@pytest.mark.parametrize("key,region,instance_id", [e[1:] for e in ELSEWHERE], ids=[e[0] for e in ELSEWHERE])
def test_instance_not_found(backup_server, kept_backup, action, params, key, region, instance_id):
    owner = client(backup_server)
    before = [(b.BackId, b.DeleteTime) for b in listed(owner, BACKUP_INSTANCE)]
    assert (kept_backup.BackId, "") in before
    c = client(backup_server, key, region=region)
    err = expect_error("InvalidParameterValue.NotFoundInstance", call, c, action, InstanceId=instance_id, **params)
    assert instance_id in err.get_message()
    # Nothing was queued, deleted or changed.
    assert [(b.BackId, b.DeleteTime) for b in listed(owner, BACKUP_INSTANCE)] == before
    assert call(client(backup_server, KEY_B), "DescribeDBBackups", InstanceId=B_INSTANCE).TotalCount == 0


def test_backup_ids_belong_to_their_instance(backup_server, kept_backup):
    # The kept backup of BACKUP_INSTANCE named under A's other instance.
    c = client(backup_server)
    err = expect_error("InvalidParameterValue", call, c, "DeleteDBBackups", InstanceId=A_REPLICA,
                       BackupIds=[kept_backup.BackId])
    assert str(kept_backup.BackId) in err.get_message()
    result = call(c, "ModifyBackupExpireTime", InstanceId=A_REPLICA, ExpireTime=FAR_FUTURE,
                  BackupIds=[kept_backup.BackId])
    assert result.FailedBackups == [kept_backup.BackId]
    assert by_id(c, BACKUP_INSTANCE, kept_backup.BackId).DeleteTime == ""


@pytest.mark.parametrize("request_id", ["1", "17000000000000001", "not-a-number"])
def test_unknown_async_request(backup_server, request_id):
    c = client(backup_server)
    err = expect_error("InvalidParameterValue", call, c, "DescribeAsyncRequestInfo", AsyncRequestId=request_id)
    assert "AsyncRequestId" in err.get_message() and request_id in err.get_message()


def test_async_request_of_another_account_or_region(backup_server):
    c = client(backup_server)
    created = call(c, "CreateBackupDBInstance", InstanceId=BACKUP_INSTANCE, BackupMethod=0)
    rid = created.AsyncRequestId
    unknown = expect_error("InvalidParameterValue", call, c, "DescribeAsyncRequestInfo", AsyncRequestId="1")
    for other in (client(backup_server, KEY_B), client(backup_server, region="ap-shanghai")):
        err = expect_error("InvalidParameterValue", call, other, "DescribeAsyncRequestInfo", AsyncRequestId=rid)
        # The same answer as for an ID that does not exist.
        assert err.get_message().replace(rid, "1") == unknown.get_message()
    info, seen = wait_done(c, rid)
    assert info.Status == "success", seen


# -- sub-account policies ------------------------------------------------------


def test_sub_account_policies(backup_server, kept_backup):
    # Allowed only mongodb:DescribeDBBackups, on every resource.
    denied = client(backup_server, KEY_A_DENIED)
    assert kept_backup.BackId in [b.BackId for b in listed(denied, BACKUP_INSTANCE)]
    for action, params in INSTANCE_ACTIONS:
        if action != "DescribeDBBackups":
            expect_error("InvalidParameter.PermissionDenied", call, denied, action,
                         InstanceId=BACKUP_INSTANCE, **params)
    expect_error("InvalidParameter.PermissionDenied", call, denied, "DeleteDBBackups",
                 InstanceId=BACKUP_INSTANCE, BackupIds=[kept_backup.BackId])
    assert by_id(client(backup_server), BACKUP_INSTANCE, kept_backup.BackId) is not None

    # Allowed mongodb:Describe* on cmgo-ord3* only.
    one = client(backup_server, KEY_A_ONE)
    expect_error("InvalidParameter.PermissionDenied", call, one, "DescribeDBBackups", InstanceId=BACKUP_INSTANCE)
    response = call(one, "DescribeDBBackups", InstanceId=A_REPLICA)
    assert (response.TotalCount, response.BackupList) == (0, [])


# -- tccli ---------------------------------------------------------------------


def test_tccli_describe_db_backups(backup_server, kept_backup, tmp_path):
    assert TCCLI.exists(), f"{TCCLI} is missing"
    env = client_env(HOME=str(tmp_path))  # tccli writes $HOME/.tccli
    for name in ("TENCENTCLOUD_SECRET_ID", "TENCENTCLOUD_SECRET_KEY", "TENCENTCLOUD_REGION"):
        env.pop(name, None)
    proc = subprocess.run(
        [
            str(TCCLI), "mongodb", "DescribeDBBackups", "--InstanceId", BACKUP_INSTANCE,
            "--BackupMethod", "0", "--Limit", "100",
            "--endpoint", backup_server.url, "--region", "ap-guangzhou",
            "--secretId", KEY_A.secret_id, "--secretKey", KEY_A.secret_key,
        ],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, f"tccli exited {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    out = json.loads(proc.stdout)
    assert out["TotalCount"] == len(out["BackupList"]) >= 1
    [kept] = [b for b in out["BackupList"] if b["BackId"] == kept_backup.BackId]
    assert kept == json.loads(kept_backup.to_json_string())
    assert (kept["BackupName"], kept["BackupDesc"], kept["Status"], kept["DeleteTime"]) == (
        kept_backup.BackupName, "kept", 2, "")
