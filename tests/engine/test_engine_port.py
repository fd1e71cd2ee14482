"""The StackEngine port: the registry builds engines from the spec, and what callers used to learn by asking
which engine they hold (``hasattr(engine, "provider")``, ``name == "local"``, ``getattr(engine, "adopt")``)
is a method or capability of the port, answered by each engine. No processes, no Pulumi CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sculpt.catalog import local_catalog
from sculpt.domain.errors import ConfigError
from sculpt.domain.fleet import Fleet, Slot
from sculpt.domain.spec import parse_spec
from sculpt.engine import registry
from sculpt.engine.base import StackEngine
from sculpt.engine.local import LocalEngine, fleet_record
from sculpt.engine.pulumi_engine import PulumiEngine
from sculpt.ledger import Ledger


def local_spec(**changes: Any) -> Any:
    return parse_spec({"fleet": "web", "shape": "std-0.5c-512m", "region": "local-a", **changes})


def pulumi_spec() -> Any:
    return parse_spec({"fleet": "web", "engine": "pulumi", "provider": "aws", "shape": "m6i.large",
                       "region": "us-east-1"})


@pytest.fixture
def ledger(tmp_path: Path) -> Any:
    led = Ledger(tmp_path / "ledger.db")
    yield led
    led.close()


class FakeProvider:
    """A ``Provider`` that reports what it is told (the engine must pass its answers through)."""

    name = "local"

    def __init__(self, status: dict[str, Any] | None, running: bool) -> None:
        self._status, self._running = status, running

    def apply(self, fleet: Fleet) -> dict[str, Any]:
        raise AssertionError("not applied in these tests")

    def status(self) -> dict[str, Any] | None:
        return self._status

    def destroy(self) -> None:
        raise AssertionError("not destroyed in these tests")

    def capabilities(self) -> Any:
        return {"live_resize": True, "enforcement": "cgroup-v2"}

    def running(self) -> bool:
        return self._running


def test_registry_builds_the_local_engine_for_engine_local(tmp_path: Path, ledger: Ledger) -> None:
    eng = registry.engine_for(local_spec(), tmp_path, ledger, local_catalog(), apply_timeout_s=7.0)
    assert isinstance(eng, LocalEngine) and eng.stack == "web" and eng.name == "local"
    assert eng.provider.timeout_s == 7.0  # type: ignore[attr-defined]


def test_registry_refuses_the_local_engine_on_another_provider(tmp_path: Path, ledger: Ledger) -> None:
    with pytest.raises(ConfigError, match="runs provider 'local' on the local engine, not 'sim'"):
        registry.engine_for(local_spec(provider="sim"), tmp_path, ledger, local_catalog())


def test_registry_refuses_an_engine_it_does_not_know(tmp_path: Path, ledger: Ledger) -> None:
    spec = local_spec().model_copy(update={"engine": "terraform"})
    with pytest.raises(ConfigError, match="engine 'terraform' is not available"):
        registry.engine_for(spec, tmp_path, ledger, local_catalog())


def test_registry_asks_the_pulumi_module_factory_at_call_time(tmp_path: Path, ledger: Ledger,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The Pulumi tests inject a CLI double by replacing ``pulumi_engine.make_engine``: the registry must
    call whatever is there when a spec asks, with the state directory as ``home``."""
    from sculpt.engine import pulumi_engine

    seen: list[Path] = []

    def fake(spec: Any, led: Any, catalog: Any, home: Path) -> PulumiEngine:
        seen.append(home)
        return PulumiEngine(spec, home, led)

    monkeypatch.setattr(pulumi_engine, "make_engine", fake)
    eng = registry.engine_for(pulumi_spec(), tmp_path, ledger, local_catalog())
    assert isinstance(eng, PulumiEngine) and seen == [tmp_path]


def test_a_local_stack_does_not_import_the_pulumi_engine() -> None:
    code = (
        "import sys, json, tempfile, pathlib\n"
        "from sculpt.catalog import local_catalog\n"
        "from sculpt.domain.spec import parse_spec\n"
        "from sculpt.engine.registry import engine_for\n"
        "from sculpt.ledger import Ledger\n"
        "d = pathlib.Path(tempfile.mkdtemp())\n"
        "spec = parse_spec({'fleet': 'web', 'shape': 'std-0.5c-512m', 'region': 'local-a'})\n"
        "engine_for(spec, d, Ledger(d / 'ledger.db'), local_catalog())\n"
        "print(json.dumps([m for m in ('sculpt.engine.pulumi_engine', 'pulumi') if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_the_local_engine_answers_from_its_provider(ledger: Ledger) -> None:
    view = {"lb": {"address": "127.0.0.1:9"}, "instances": [{"id": "web-0", "healthy": True}]}
    eng: StackEngine = LocalEngine("web", ledger, local_catalog(), FakeProvider(view, running=False))
    assert eng.status() == view and eng.reports_health and eng.moves_regions
    assert eng.running() is False
    assert eng.adopt() == 0 and eng.outputs() == {}
    assert eng.stepwise() is eng  # `up`/`rollback` go through sculpt.app.change; morphs through LocalPlatform


def test_the_pulumi_engine_assembles_status_from_the_ledger_and_outputs(tmp_path: Path, ledger: Ledger) -> None:
    """No agent: the slots of the current version joined with the stack outputs, health left to the cloud's
    checks (``reports_health`` is False, so ``sculpt.app.status`` reads them through the morph platform)."""
    spec = pulumi_spec()
    fleet = Fleet(spec=spec, slots=(Slot(id="web-0", shape="m6i.large", region="us-east-1"),
                                    Slot(id="web-1", shape="m6i.large", region="us-east-1", colour="green",
                                         weight=0)))
    eng: StackEngine = PulumiEngine(spec, tmp_path, ledger)
    assert eng.status() is None  # a new stack: nothing runs
    ledger.append_version("web", spec=spec.model_dump(mode="json"), fleet=fleet_record(fleet), result="succeeded",
                          message="up")
    eng._outputs = {"url": "http://web-123.elb.amazonaws.com",  # type: ignore[attr-defined]
                    "instances": {"web-0": {"id": "i-0abc", "private_ip": "10.0.0.5"}}}
    view = eng.status()
    assert view is not None and not eng.reports_health
    assert view["lb"] == {"address": "web-123.elb.amazonaws.com"}
    rows = {r["id"]: r for r in view["instances"]}
    assert rows["web-0"]["instance_id"] == "i-0abc" and rows["web-0"]["address"] == "10.0.0.5"
    assert rows["web-1"]["instance_id"] is None and rows["web-1"]["colour"] == "green"
    assert all(r["healthy"] is None for r in view["instances"])
    assert eng.stepwise() is None and eng.running() is True and not eng.moves_regions
