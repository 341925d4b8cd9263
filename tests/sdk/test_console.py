"""The web console in a real browser (Debian's Chromium, driven by
Playwright): sign in with API keys (wrong keys are told so, with the
keyboard alone), see the instance, take a backup and see it finish,
package it for download, watch the task reach 100%, download the file and
check its SHA-256 against the API's, change a backup's expiry and delete
it, edit the backup rule (a refused value shows at its field), restore a
collection to a time in the window and flash back two of its keys, a
sub-account without
CreateBackupDownloadTask sees the API's refusal, and every page is
readable at phone width without horizontal scrolling. No page logs a
JavaScript error.

Screenshots of each page go to target/console-screenshots/ (CI keeps
them); the README shows the downloads page.
"""

import hashlib
import os
import shutil
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from mongobak_harness import Key, instance_toml, start_server
from test_backups import client, raw

REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "target" / "console-screenshots"
INSTANCE = "cmgo-console1"
ROOT = Key("100000000041", "AKIDmbE1c0ns0le7Rr9Tt2Yy4Uu6Ii8Oo1Pp", "mbE1x4Cv7Bn0Mq3Wr6Ty9Ui2Op5As8Df")
# A sub-account that may read everything and back up, but not package
# downloads.
NO_DOWNLOADS = Key("100000000042", "AKIDmbE2n0Dl7Rr9Tt2Yy4Uu6Ii8Oo1Pp3Aa", "mbE2z5Xc8Vb1Nm4Lk7Jh0Gf3Ds6Aq9We")
TIMEOUT_MS = 60_000


def chromium() -> str:
    """Debian's Chromium, which scripts/test installs when it is missing."""
    path = os.environ.get("MONGOBAK_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    assert Path(path).exists(), f"no Chromium at {path}: scripts/test installs Debian's chromium package"
    return path


@pytest.fixture(scope="module")
def console_server(tmp_path_factory, mongo):
    body = f"""
[[accounts]]
app_id = 1250000041
uin = "{ROOT.uin}"
secret_id = "{ROOT.secret_id}"
secret_key = "{ROOT.secret_key}"

[[accounts.sub_users]]
uin = "{NO_DOWNLOADS.uin}"
secret_id = "{NO_DOWNLOADS.secret_id}"
secret_key = "{NO_DOWNLOADS.secret_key}"
allow = ["mongodb:Describe*", "mongodb:CreateBackupDBInstance"]
""" + instance_toml(INSTANCE, mongo.uri, owner=ROOT)
    srv = start_server(tmp_path_factory.mktemp("mongobak-console"), body)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium(),
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, console_server):
    """A fresh page at 1280x800 whose JavaScript errors fail the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors = []
    page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
    page.on("console", lambda message: message.type == "error" and errors.append(f"console: {message.text}"))
    yield page
    context.close()
    assert not errors, "\n".join(errors)


def documents(mongo, collection):
    """The documents of `shop.<collection>`, in `_id` order."""
    mongo_client = mongo.client()
    try:
        return sorted(mongo_client.shop[collection].find(), key=lambda d: d["_id"])
    finally:
        mongo_client.close()


def shot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def sign_in(page, server, key: Key, accepted=True):
    """Signs in with `key`; when it is `accepted`, waits for the
    instances page."""
    page.goto(f"{server.url}/console/")
    page.get_by_label("SecretId").fill(key.secret_id)
    page.get_by_label("SecretKey").fill(key.secret_key)
    page.get_by_label("Region").fill("ap-guangzhou")
    page.get_by_role("button", name="Sign in").click()
    if accepted:
        expect(page.get_by_role("button", name="Sign out")).to_be_visible()
        expect(page.locator("main h1")).to_have_text("Instances")


def test_wrong_keys_are_told_so(page, console_server):
    # With the keyboard alone: type, Tab, Enter.
    page.goto(f"{console_server.url}/console/")
    expect(page.get_by_label("SecretId")).to_be_focused()
    page.keyboard.type(ROOT.secret_id)
    page.keyboard.press("Tab")
    page.keyboard.type("not-the-key")
    page.keyboard.press("Enter")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Wrong keys")
    expect(alert).to_contain_text("AuthFailure.SignatureFailure")
    shot(page, "signin-wrong-keys")
    # Nothing was kept.
    assert page.evaluate("sessionStorage.length") == 0


def test_a_backup_is_taken_packaged_and_downloaded(page, console_server, tmp_path):
    sign_in(page, console_server, ROOT)
    row = page.locator(f"tr[data-instance='{INSTANCE}']")
    expect(row).to_contain_text(f"{INSTANCE}_0")
    expect(row.locator("td.latest")).to_contain_text("none yet")
    shot(page, "instances")

    row.get_by_role("link", name="Backups").click()
    page.get_by_label("Remark").fill("from the console")
    take = page.get_by_role("button", name="Back up now")
    take.click()
    expect(page.locator(".status")).to_contain_text("succeeded", timeout=TIMEOUT_MS)
    backup = page.locator("tr[data-backup]").first
    expect(backup).to_contain_text("from the console")
    expect(backup).to_contain_text("succeeded")
    backup_name = backup.get_attribute("data-backup")
    shot(page, "backups")

    backup.get_by_role("link", name="Download…").click()
    expect(page.get_by_label("Backup")).to_have_value(backup_name)
    page.get_by_role("button", name="Create download tasks").click()
    task = page.locator(f"tr[data-backup='{backup_name}'][data-replica-set='{INSTANCE}_0']")
    expect(task).to_have_attribute("data-status", "2", timeout=TIMEOUT_MS)
    expect(task.locator("td.percent")).to_contain_text("100%")
    shown_sha = task.locator("code.sha256").get_attribute("title")
    shot(page, "downloads")

    with page.expect_download() as download:
        task.get_by_role("link", name="Download").click()
    saved = tmp_path / "download.archive.gz"
    download.value.save_as(saved)
    digest = hashlib.sha256(saved.read_bytes()).hexdigest()
    api = raw(client(console_server, ROOT), "DescribeBackupDownloadTask", InstanceId=INSTANCE, BackupName=backup_name)
    assert api["Tasks"][0]["SHA256"] == digest == shown_sha
    assert saved.stat().st_size == api["Tasks"][0]["BackupSize"]

    # Back on the instances page, the latest backup shows.
    page.get_by_role("link", name="Instances").first.click()
    expect(page.locator(f"tr[data-instance='{INSTANCE}'] td.latest")).to_contain_text(backup_name)

    # Sign-out forgets the keys.
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0


def test_a_backup_expiry_is_changed_and_the_backup_deleted(page, console_server):
    api = client(console_server, ROOT)
    created = raw(api, "CreateBackupDBInstance", InstanceId=INSTANCE, BackupMethod=0, BackupRemark="to delete")
    deadline = time.monotonic() + 60
    while raw(api, "DescribeAsyncRequestInfo", AsyncRequestId=created["AsyncRequestId"])["Status"] != "success":
        assert time.monotonic() < deadline, "the backup did not finish"
        time.sleep(0.2)
    sign_in(page, console_server, ROOT)
    page.goto(f"{console_server.url}/console/#/instances/{INSTANCE}/backups")
    row = page.locator("tr[data-backup]", has_text="to delete")
    row.get_by_role("button", name="Change expiry").click()
    row.get_by_label("New expiry").fill("2099-01-02 03:04:05")
    row.get_by_role("button", name="Save").click()
    expect(page.locator(".status")).to_contain_text("2099-01-02 03:04:05")
    expect(page.locator("tr[data-backup]", has_text="to delete")).to_contain_text("2099-01-02 03:04:05")
    row = page.locator("tr[data-backup]", has_text="to delete")
    row.get_by_role("button", name="Delete").click()
    row.get_by_role("button", name="Delete for good").click()
    expect(page.locator(".status")).to_contain_text("deleted")
    expect(page.locator("tr[data-backup]", has_text="to delete")).to_have_count(0)
    backups = raw(api, "DescribeDBBackups", InstanceId=INSTANCE)["BackupList"]
    assert all(b["BackupDesc"] != "to delete" for b in backups), backups


def test_a_refused_rule_value_shows_at_its_field(page, console_server):
    sign_in(page, console_server, ROOT)
    page.goto(f"{console_server.url}/console/#/instances/{INSTANCE}/rules")
    oplog = page.get_by_label("Keep the oplog for point-in-time recovery (days)")
    oplog.fill("3")
    page.get_by_role("button", name="Save rule").click()
    error = page.locator(".field[data-param='OplogExpiredDays'] .field-error")
    expect(error).to_contain_text("InvalidParameterValue")
    expect(oplog).to_be_focused()
    shot(page, "rules-refused")
    oplog.fill("9")
    page.get_by_role("button", name="Save rule").click()
    expect(page.locator(".status")).to_contain_text("Rule saved.")
    rules = raw(client(console_server, ROOT), "DescribeBackupRules", InstanceId=INSTANCE)
    assert rules["OplogExpiredDays"] == 9
    shot(page, "rules")


def test_a_sub_account_sees_the_api_refusal(page, console_server):
    sign_in(page, console_server, NO_DOWNLOADS)
    expect(page.locator(f"tr[data-instance='{INSTANCE}']")).to_be_visible()
    page.goto(f"{console_server.url}/console/#/instances/{INSTANCE}/downloads")
    create = page.get_by_role("button", name="Create download tasks")
    expect(create).to_be_enabled()
    create.click()
    expect(page.get_by_role("alert")).to_contain_text("InvalidParameter.PermissionDenied")
    shot(page, "downloads-refused")


def test_a_collection_is_restored_to_a_time_in_the_window(page, console_server, mongo):
    # A backup, then a write in a later second: the window opens.
    api = client(console_server, ROOT)
    created = raw(api, "CreateBackupDBInstance", InstanceId=INSTANCE, BackupMethod=0)
    deadline = time.monotonic() + 60
    while raw(api, "DescribeAsyncRequestInfo", AsyncRequestId=created["AsyncRequestId"])["Status"] != "success":
        assert time.monotonic() < deadline, "the base backup did not finish"
        time.sleep(0.2)
    time.sleep(1.1)
    mongo_client = mongo.client()
    try:
        mongo_client.shop.console_marks.insert_one({"after": "the base"})
    finally:
        mongo_client.close()
    orders = documents(mongo, "orders")

    sign_in(page, console_server, ROOT)
    page.goto(f"{console_server.url}/console/#/instances/{INSTANCE}/restore")
    expect(page.locator(".window-box .span").first).to_be_visible(timeout=TIMEOUT_MS)
    page.get_by_label("Database").select_option("shop")
    row = page.locator(".collection[data-collection='orders']")
    row.get_by_role("checkbox").check()
    row.get_by_label("New name of orders").fill("orders_console")
    shot(page, "restore")
    page.get_by_role("button", name="Restore").click()
    expect(page.locator(".status")).to_contain_text("succeeded", timeout=TIMEOUT_MS)
    restored = documents(mongo, "orders_console")
    assert restored == orders and restored

    # Flashback of two keys (values as text, matching the numbers).
    keys = [orders[0]["_id"], orders[1]["_id"]]
    page.get_by_label("Collection", exact=True).select_option("orders")
    page.get_by_label("Key values").fill("\n".join(str(k) for k in keys))
    page.get_by_label("Result collection").fill("orders_keys")
    shot(page, "flashback")
    page.get_by_role("button", name="Flash back").click()
    expect(page.locator(".status")).to_contain_text("Flashback", timeout=TIMEOUT_MS)
    expect(page.locator(".status")).to_contain_text("succeeded", timeout=TIMEOUT_MS)
    assert documents(mongo, "orders_keys") == orders[:2]


def test_every_page_fits_a_phone(browser, console_server):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        sign_in(page, console_server, ROOT)
        expect(page.locator(f"tr[data-instance='{INSTANCE}']")).to_be_visible()
        for name in ("instances", "backups", "downloads", "rules", "restore"):
            if name != "instances":
                page.goto(f"{console_server.url}/console/#/instances/{INSTANCE}/{name}")
            expect(page.locator("main h1")).to_be_visible()
            expect(page.locator(".loading")).to_have_count(0)
            page.wait_for_load_state("networkidle")
            overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 0, f"{name} scrolls sideways by {overflow} px at phone width"
            shot(page, f"phone-{name}")
    finally:
        context.close()
