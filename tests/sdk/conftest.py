"""Fixtures: `mongobak serve` processes configured for the conformance tests.

* `server`: the module-scoped default server (accounts A-D, A's three
  instances, B's one; see mongobak_harness).
* `start_mongobak`: a factory for extra servers with their own config, each
  in its own tmp dir and stopped at the end of the test.
* `mongo`: a module-scoped SecantusDB server (a real MongoDB to back up),
  seeded with a few collections.
* `backup_server`: a module-scoped server that also has A's instance
  `cmgo-bkup0001` on `mongo` and `cmgo-dead0001` on `dead_uri`, a closed
  port, and an admin listener (`admin_url`).

Every server is stopped by its pid; on a test failure the tail of each
running server's stderr is attached to the report.
"""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mongobak_harness import (  # noqa: E402
    BACKUP_INSTANCE,
    DEAD_INSTANCE,
    LIVE_MONGOS,
    LIVE_SERVERS,
    PROXY_VARIABLES,
    closed_port_uri,
    default_body,
    instance_toml,
    mongobak_bin,
    seed,
    start_mongo,
    start_server,
)


def pytest_configure(config):
    # The clients honour proxy variables; the server is local.
    for name in PROXY_VARIABLES:
        os.environ.pop(name, None)


@pytest.fixture(scope="session", autouse=True)
def _mongobak_binary():
    path = mongobak_bin()
    if not os.access(path, os.X_OK):
        pytest.exit(f"mongobak binary not found at {path}: run `cargo build --bins` or set MONGOBAK_BIN", 2)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The default server, shared by the tests of one module."""
    srv = start_server(tmp_path_factory.mktemp("mongobak"), default_body())
    yield srv
    srv.stop()


@pytest.fixture
def start_mongobak(tmp_path):
    """Factory: start_mongobak(body=None, server_options=None, name="srv").

    `body` is the TOML after [server] (default: the default accounts and
    instances); `server_options` adds [server] keys (e.g. TLS files)."""
    started = []

    def start(body=None, server_options=None, name="srv"):
        srv = start_server(
            tmp_path / f"{name}{len(started)}",
            default_body() if body is None else body,
            server_options,
        )
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


@pytest.fixture(scope="module")
def mongo(tmp_path_factory):
    """A seeded SecantusDB server; `mongo.seeded` holds each namespace's
    document count."""
    srv = start_mongo(tmp_path_factory.mktemp("secantus"))
    try:
        srv.seeded.update(seed(srv))
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def dead_uri():
    """A URI nothing listens on; server selection gives up after 300 ms."""
    return closed_port_uri(300)


@pytest.fixture(scope="module")
def backup_server(tmp_path_factory, mongo, dead_uri):
    """The default accounts and instances, plus A's backup instances."""
    body = default_body() + instance_toml(BACKUP_INSTANCE, mongo.uri) + instance_toml(DEAD_INSTANCE, dead_uri)
    # The admin listener serves the per-instance storage series.
    srv = start_server(tmp_path_factory.mktemp("mongobak-backups"), body, {"admin_listen": "127.0.0.1:0"})
    yield srv
    srv.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for srv in list(LIVE_SERVERS):
            report.sections.append((f"mongobak stderr ({srv.url})", srv.stderr_tail()))
        for mongo in list(LIVE_MONGOS):
            report.sections.append((f"secantusd log (port {mongo.port})", mongo.log_tail()))
