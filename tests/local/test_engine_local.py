"""LocalEngine over the real ledger and the real local provider (agent + demo app processes).

Checks the version life cycle (pending -> succeeded | failed), that a failed version re-applies the last
good one so the processes match the ledger, rollback as a new version, destroy, and validation errors that
leave the ledger untouched.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from sculpt.catalog import local_catalog
from sculpt.domain.errors import ConfigError, LockedError, NotFoundError, ProviderError
from sculpt.domain.fleet import Fleet
from sculpt.domain.spec import parse_spec
from sculpt.engine.local import LocalEngine, fleet_of
from sculpt.ledger import Ledger
from sculpt.providers.local.provider import LocalProvider

pytestmark = pytest.mark.e2e


def spec(**changes: Any) -> Any:
    data = {"fleet": "web", "shape": "std-0.5c-512m", "region": "local-a",
            "replicas": {"min": 0, "max": 3, "desired": 1}}
    data.update(changes)
    return parse_spec(data)


def fleet(**changes: Any) -> Fleet:
    return Fleet.from_spec(spec(**changes))


@pytest.fixture
def engine(sculpt_home: Path) -> Iterator[LocalEngine]:
    ledger = Ledger(sculpt_home / "ledger.db")
    catalog = local_catalog()
    provider = LocalProvider(sculpt_home, "web", catalog=catalog, timeout_s=30)
    eng = LocalEngine("web", ledger, catalog, provider)
    yield eng
    pids: set[int] = set()
    if provider.running():
        st = provider.client.status()
        pids = {i["pid"] for i in st["instances"] if i["pid"]} | {st["agent_pid"]}
    provider.destroy()
    ledger.close()
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_up_records_a_succeeded_version_and_runs_the_fleet(engine: LocalEngine) -> None:
    assert engine.current() is None
    assert engine.preview(fleet()).summary == {"create": 1}
    n = engine.up(fleet(), "first")
    assert n == 1
    (v,) = engine.history()
    assert (v.version, v.result, v.kind, v.message) == (1, "succeeded", "up", "first")
    assert fleet_of(v) == fleet()
    st = engine.provider.status()
    assert st is not None and [i["healthy"] for i in st["instances"]] == [True]
    assert engine.preview(fleet()).empty


def test_shape_change_then_rollback_is_a_new_version_with_the_old_fleet(engine: LocalEngine) -> None:
    engine.up(fleet())
    live = engine.provider.capabilities()["live_resize"]
    diff = engine.preview(fleet(shape="std-1c-1024m"))
    assert diff.summary == ({"update": 1} if live else {"replace": 1})
    assert engine.up(fleet(shape="std-1c-1024m")) == 2
    assert engine.provider.status()["instances"][0]["shape"] == "std-1c-1024m"
    assert engine.previous_succeeded() == 1
    assert engine.rollback(1) == 3
    v3 = engine.history()[-1]
    assert (v3.kind, v3.message, v3.result) == ("rollback", "rollback to 1", "succeeded")
    assert fleet_of(v3).slots == fleet().slots
    inst = engine.provider.status()["instances"][0]
    assert (inst["shape"], inst["cpu_limit"]) == ("std-0.5c-512m", 0.5)
    assert [v.version for v in engine.history()] == [1, 2, 3]


def test_a_failed_up_is_recorded_and_the_last_good_version_keeps_running(engine: LocalEngine) -> None:
    engine.up(fleet())
    before = engine.provider.status()["instances"][0]
    bad = [sys.executable, "-c", "import sys; print('fatal: no config', file=sys.stderr); sys.exit(2)"]
    with pytest.raises(ProviderError, match="exited at once with code 2: fatal: no config"):
        engine.up(fleet(app={"command": bad}, replicas={"min": 0, "max": 3, "desired": 2}), "bad app")
    v2 = engine.history()[-1]
    assert (v2.version, v2.result) == (2, "failed")
    assert v2.message.startswith("bad app (failed: the app of instance web-") and "exited at once with code 2" in v2.message
    assert engine.current_version() == 1
    after = engine.provider.status()["instances"]
    assert [(i["id"], i["pid"], i["healthy"]) for i in after] == [("web-0", before["pid"], True)]
    with pytest.raises(ConfigError, match="version 2 of stack 'web' failed"):
        engine.rollback(2)


def test_a_failed_first_up_leaves_nothing_running(engine: LocalEngine) -> None:
    bad = [sys.executable, "-c", "raise SystemExit(5)"]
    with pytest.raises(ProviderError, match="exited at once with code 5"):
        engine.up(fleet(app={"command": bad}))
    assert [v.result for v in engine.history()] == ["failed"]
    assert engine.provider.status() is None  # the agent was shut down again


def test_unknown_shape_or_region_is_rejected_before_any_version(engine: LocalEngine) -> None:
    with pytest.raises(NotFoundError, match="shape 'm9.huge' is not in the local catalog. To fix: pick one"):
        engine.up(fleet(shape="m9.huge"))
    with pytest.raises(NotFoundError, match="region 'mars-1' is not in the local catalog"):
        engine.up(fleet(region="mars-1"))
    assert engine.history() == []
    assert engine.provider.status() is None


def test_other_providers_are_rejected(engine: LocalEngine) -> None:
    with pytest.raises(ConfigError, match="not 'sim'"):
        engine.up(fleet(provider="sim"))
    assert engine.history() == []


def test_a_stack_locked_by_another_live_process_is_refused(engine: LocalEngine) -> None:
    holder = textwrap.dedent("""
        import sys
        from sculpt.ledger import Ledger
        Ledger(sys.argv[1]).acquire("web", "morph")
        print("held", flush=True)
        sys.stdin.readline()
    """)
    p = subprocess.Popen([sys.executable, "-c", holder, str(engine.ledger.path)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "held"
        with pytest.raises(LockedError, match=f"locked by pid {p.pid}"):
            engine.up(fleet())
        assert engine.history() == []
    finally:
        assert p.stdin is not None and p.stdout is not None
        p.stdin.close()
        p.wait(10)
        p.stdout.close()


def test_destroy_stops_everything_and_keeps_history(engine: LocalEngine) -> None:
    engine.up(fleet())
    engine.destroy()
    assert engine.provider.status() is None
    h = engine.history()
    assert [(v.version, v.kind, v.result) for v in h] == [(1, "up", "succeeded"), (2, "down", "succeeded")]
    assert engine.current() is not None and engine.current().slots == ()
    # up again after down starts from nothing
    assert engine.preview(fleet()).summary == {"create": 1}
    assert engine.up(fleet()) == 3
