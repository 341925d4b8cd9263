"""Every action's answer, walked through the official Python SDK's models.

Against a real `mongobak serve` backing up a real MongoDB (SecantusDB),
with a finished backup and a finished download task so that the lists
are not empty, each provided action is called and its raw `Response`
object compared with the SDK's `<Action>Response` model, recursively:
every field the model declares is present with the declared type (read
from the `:rtype:` line of the property's docstring), and every field the
model lacks is one of the extra fields documented in docs/api.md, read
from its table. Documented extras that no answer carries fail too, so the
table stays true. And every list parameter of the SDK's request models
has a cap in the README's API reference.
"""

import json
import re
import time
from pathlib import Path

import pytest
from tencentcloud.common import credential
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.mongodb.v20190725 import models, mongodb_client

from mongobak_harness import BACKUP_INSTANCE, KEY_A, resend_if_replayed

REPO = Path(__file__).resolve().parents[2]
DEADLINE = 60.0
POLL_INTERVAL = 0.1


# -- the documented extras and the provided actions ----------------------------


def documented_extras() -> set:
    """{(model, field)} from the table under "## Extra fields" of docs/api.md."""
    text = (REPO / "docs" / "api.md").read_text()
    section = text.split("## Extra fields", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| ([A-Z]\w*) \| ([A-Z]\w*) \| [^|]+ \|$", section, re.M)
    assert rows, "docs/api.md lists no extra fields"
    return set(rows)


def provided_actions() -> list:
    """The names in `Action::ALL` of the Rust API."""
    source = (REPO / "crates" / "api" / "src" / "actions" / "mod.rs").read_text()
    block = re.search(r"pub const ALL: &'static \[Action\] = &\[(.*?)\];", source, re.S)
    assert block, "Action::ALL not found"
    return re.findall(r"Action::(\w+)", block.group(1))


# -- the walk -------------------------------------------------------------------


def model_fields(cls) -> dict:
    """{field: declared type} of an SDK model class."""
    fields = {}
    for name, prop in vars(cls).items():
        if isinstance(prop, property):
            declared = re.search(r":rtype:\s*(.+)", prop.__doc__ or "")
            assert declared, f"{cls.__name__}.{name} declares no type"
            fields[name] = declared.group(1).strip()
    return fields


def nested_model(declared: str):
    """The model class a type names (`ShardInfo`, or the `:class:` form), or None."""
    match = re.fullmatch(r":class:`tencentcloud\.mongodb\.v20190725\.models\.(\w+)`", declared)
    name = match.group(1) if match else declared
    return getattr(models, name, None) if re.fullmatch(r"[A-Z]\w*", name) else None


SCALARS = {
    "str": lambda v: isinstance(v, str),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
}


def check_value(value, declared: str, path: str, extras: set, seen: set, problems: list) -> None:
    if declared.startswith("list of "):
        if not isinstance(value, list):
            problems.append(f"{path}: {declared} expected, got {json.dumps(value)[:80]}")
            return
        element = declared[len("list of ") :].split()[0]
        for i, item in enumerate(value):
            check_value(item, element, f"{path}[{i}]", extras, seen, problems)
        return
    model = nested_model(declared)
    if model is not None:
        walk(value, model, path, extras, seen, problems)
        return
    check = SCALARS.get(declared.split()[0])
    if check is None:
        problems.append(f"{path}: the model's type {declared!r} is not understood")
    elif not check(value):
        problems.append(f"{path}: {declared} expected, got {json.dumps(value)[:80]}")


def walk(value, model, path: str, extras: set, seen: set, problems: list) -> None:
    """Compares `value` with `model`, appending what is wrong to `problems`
    and the extras met to `seen`."""
    if not isinstance(value, dict):
        problems.append(f"{path}: a {model.__name__} object expected, got {json.dumps(value)[:80]}")
        return
    fields = model_fields(model)
    for name, declared in fields.items():
        if name not in value:
            problems.append(f"{path}.{name}: missing ({model.__name__} declares {declared})")
        else:
            check_value(value[name], declared, f"{path}.{name}", extras, seen, problems)
    for name in value.keys() - fields.keys():
        if (model.__name__, name) in extras:
            seen.add((model.__name__, name))
        else:
            problems.append(f"{path}.{name}: not in {model.__name__} and not a documented extra")


# -- calls ------------------------------------------------------------------------


def client(server):
    hp = HttpProfile(endpoint=server.endpoint, protocol="http", reqTimeout=15)
    profile = ClientProfile(httpProfile=hp)
    return mongodb_client.MongodbClient(
        credential.Credential(KEY_A.secret_id, KEY_A.secret_key), "ap-guangzhou", profile
    )


def raw(c, action: str, **params) -> dict:
    """The `Response` object as sent; an error fails the test."""
    response = resend_if_replayed(c.call_json, action, params)["Response"]
    assert "Error" not in response, f"{action}: {response}"
    return response


def poll(what: str, answer, done):
    limit = time.monotonic() + DEADLINE
    while True:
        value = answer()
        if done(value):
            return value
        assert time.monotonic() < limit, f"{what} not done within {DEADLINE} s: {value}"
        time.sleep(POLL_INTERVAL)


def restorable_time(c, mongo) -> str:
    """A second the backup instance can be restored to: a backup taken now
    (continuous oplog backup runs by then) opens the window, and a write
    after it seals a later second."""
    created = raw(c, "CreateBackupDBInstance", InstanceId=BACKUP_INSTANCE, BackupMethod=0)
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
        client_.shop.walked.insert_one({"after": "the base"})
    finally:
        client_.close()
    rules = poll(
        "a restorable window",
        lambda: raw(c, "DescribeBackupRules", InstanceId=BACKUP_INSTANCE),
        lambda r: r["RestoreWindow"],
    )
    return rules["RestoreWindow"][-1]["EndTime"]


def test_every_answer_matches_the_sdk_models(backup_server, mongo):
    c = client(backup_server)
    answers = {}

    answers["CreateBackupDBInstance"] = created = raw(
        c, "CreateBackupDBInstance", InstanceId=BACKUP_INSTANCE, BackupMethod=0, BackupRemark="walked"
    )
    info = poll(
        "the backup",
        lambda: raw(c, "DescribeAsyncRequestInfo", AsyncRequestId=created["AsyncRequestId"]),
        lambda i: i["Status"] not in ("initial", "running"),
    )
    assert info["Status"] == "success", info
    answers["DescribeAsyncRequestInfo"] = info
    backup_name = info["BackupName"]

    answers["DescribeDBInstances"] = raw(c, "DescribeDBInstances", InstanceIds=[BACKUP_INSTANCE])
    # With DbName, both lists hold names.
    answers["DescribeDBInstanceNamespace"] = raw(c, "DescribeDBInstanceNamespace", InstanceId=BACKUP_INSTANCE,
                                                 DbName="shop")
    assert answers["DescribeDBInstanceNamespace"]["Collections"], answers["DescribeDBInstanceNamespace"]
    backups = raw(c, "DescribeDBBackups", InstanceId=BACKUP_INSTANCE)
    answers["DescribeDBBackups"] = backups
    backup_id = next(b["BackId"] for b in backups["BackupList"] if b["BackupName"] == backup_name)
    # A missing ID too, so that FailedBackups has an entry to check.
    answers["ModifyBackupExpireTime"] = raw(
        c,
        "ModifyBackupExpireTime",
        InstanceId=BACKUP_INSTANCE,
        BackupIds=[backup_id, 987654321],
        ExpireTime="2099-12-31 23:59:59",
    )
    assert answers["ModifyBackupExpireTime"]["FailedBackups"] == [987654321]
    replica_set = f"{BACKUP_INSTANCE}_0"
    answers["CreateBackupDownloadTask"] = raw(
        c,
        "CreateBackupDownloadTask",
        InstanceId=BACKUP_INSTANCE,
        BackupName=backup_name,
        BackupSets=[{"ReplicaSetId": replica_set}],
    )
    answers["DescribeBackupDownloadTask"] = poll(
        "the download task",
        lambda: raw(c, "DescribeBackupDownloadTask", InstanceId=BACKUP_INSTANCE, BackupName=backup_name),
        lambda t: t["Tasks"] and t["Tasks"][0]["Status"] in (2, 3),
    )
    assert answers["DescribeBackupDownloadTask"]["Tasks"][0]["Status"] == 2
    at = restorable_time(c, mongo)
    answers["RestoreDBInstance"] = restored = raw(
        c,
        "RestoreDBInstance",
        InstanceId=BACKUP_INSTANCE,
        RestoreTime=at,
        Databases=[{"Db": "shop", "Collections": [{"OldCollection": "orders", "NewCollection": "orders_walked"}]}],
    )
    restore_info = poll(
        "the restore",
        lambda: raw(c, "DescribeAsyncRequestInfo", AsyncRequestId=str(restored["FlowId"])),
        lambda i: i["Status"] not in ("initial", "running"),
    )
    assert restore_info["Status"] == "success", restore_info
    answers["FlashBackDBInstance"] = flashed = raw(
        c,
        "FlashBackDBInstance",
        InstanceId=BACKUP_INSTANCE,
        TargetFlashbackTime=at,
        TargetDatabases=[{"DBName": "shop", "Collections": [
            {"CollectionName": "orders", "TargetResultCollectionName": "orders_flashed",
             "KeyValues": [{"Key": "_id", "Value": "1"}]}
        ]}],
    )
    flash_info = poll(
        "the flashback",
        lambda: raw(c, "DescribeAsyncRequestInfo", AsyncRequestId=str(flashed["FlowId"])),
        lambda i: i["Status"] not in ("initial", "running"),
    )
    assert flash_info["Status"] == "success", flash_info
    answers["SetBackupRules"] = raw(c, "SetBackupRules", InstanceId=BACKUP_INSTANCE, BackupTime=3)
    answers["DescribeBackupRules"] = raw(c, "DescribeBackupRules", InstanceId=BACKUP_INSTANCE)
    answers["DeleteDBBackups"] = raw(c, "DeleteDBBackups", InstanceId=BACKUP_INSTANCE, BackupIds=[backup_id])

    assert sorted(answers) == sorted(provided_actions()), "walk every provided action"
    extras, seen, problems = documented_extras(), set(), []
    for action, answer in answers.items():
        walk(answer, getattr(models, f"{action}Response"), action, extras, seen, problems)
    assert not problems, "\n".join(problems)
    assert seen == extras, f"documented extras no answer carries: {sorted(extras - seen)}"

    # MongoVersion is what the server reports.
    detail = answers["DescribeDBInstances"]["InstanceDetails"][0]
    client_ = mongo.client()
    try:
        version = client_.admin.command("buildInfo")["version"]
    finally:
        client_.close()
    assert detail["MongoVersion"] == version, detail


def readme_caps() -> dict:
    """{action: {capped list parameter}} from the README's API reference."""
    text = (REPO / "README.md").read_text()
    section = text.split("### API reference", 1)[1].split("\n## ", 1)[0]
    caps = {}
    for action, capped in re.findall(r"^\| `(\w+)` \| [^|]* \| ([^|]*) \|$", section, re.M):
        caps[action] = set(re.findall(r"`(\w+)` \d+", capped))
    return caps


def test_every_list_parameter_of_the_sdk_requests_has_a_cap():
    caps = readme_caps()
    for action in provided_actions():
        fields = model_fields(getattr(models, f"{action}Request"))
        lists = {name for name, declared in fields.items() if declared.startswith("list of ")}
        assert lists <= caps.get(action, set()), f"{action}: lists without a cap: {lists - caps.get(action, set())}"


@pytest.mark.parametrize(
    "value, declared, ok",
    [
        ("x", "str", True),
        (1, "str", False),
        (1, "int", True),
        (True, "int", False),
        (1.5, "float", True),
        (0, "float", True),
        ([1, 2], "list of int", True),
        ([1, "2"], "list of int", False),
        ({"InstanceId": "", "Region": ""}, ":class:`tencentcloud.mongodb.v20190725.models.DBInstanceInfo`", True),
        ({"InstanceId": ""}, "DBInstanceInfo", False),
        ({"InstanceId": "", "Region": "", "Other": 1}, "DBInstanceInfo", False),
    ],
)
def test_the_walk_itself(value, declared, ok):
    problems = []
    check_value(value, declared, "v", set(), set(), problems)
    assert (not problems) == ok, problems
