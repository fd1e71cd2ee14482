"""Fuzz the spec edge (issue 14): arbitrary bytes, YAML structures and field values through ``load_spec``,
and through ``sculpt preview`` / ``sculpt up`` in-process. Every outcome is a ``FleetSpec`` or a one-line
``SculptError`` with a fix; the CLI prints exactly one ``error:`` line (exit 1 or 2) and no traceback, and
a refused spec leaves the state directory as it was. Bounded (``max_examples``) to stay well under 40 s."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from sculpt.cli.main import app
from sculpt.domain.errors import SculptError
from sculpt.domain.spec import FleetSpec, load_spec

BASE: dict[str, Any] = {"fleet": "web", "shape": "std-0.5c-512m", "region": "local-a", "regions": ["local-b"],
                        "replicas": {"min": 1, "max": 3, "desired": 1}, "lb": {"drain_s": 1.0}}
BASE_TEXT = yaml.safe_dump(BASE, sort_keys=False)

# the fields a user edits, by path; plus made-up ones
PATHS = [("fleet",), ("shape",), ("region",), ("regions",), ("families",), ("profile",), ("aggressiveness",),
         ("budget_usd_per_hour",), ("tick_s",), ("tags",), ("catalog_file",), ("replicas", "min"),
         ("replicas", "max"), ("replicas", "desired"), ("slo", "p95_latency_ms"), ("slo", "max_utilisation"),
         ("app", "command"), ("app", "port"), ("app", "env"), ("app", "health_path"),
         ("app", "state_sync", "strategy"), ("lb", "port"), ("lb", "routing"), ("lb", "pause_max_ms"),
         ("lb", "drain_s"), ("lb", "pause_lease_s"), ("policy", "max_migrations_per_day"),
         ("policy", "change_windows"), ("policy", "required_tags"), ("nope",), ("lb", "nope")]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(), st.sampled_from([math.inf, -math.inf, math.nan, 1e24, 1e308, -0.0, 0.5, 600000, 3600.5]),
    st.text(max_size=20), st.sampled_from(["", " ", "\n", "local-z", "24:30", "02:00", "{port}", "a 'b", "std-1c-1024m"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=12)


def _with(base: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out = yaml.safe_load(yaml.safe_dump(base))
    node = out
    for key in path[:-1]:
        node = node.setdefault(key, {}) if isinstance(node.get(key, {}), dict) else node
    node[path[-1]] = value
    return out


def _one_line(e: SculptError) -> None:
    text = str(e)
    assert "\n" not in text and "\r" not in text, text
    assert e.fix, text  # every refusal says how to fix it


def _load(p: Path) -> FleetSpec | None:
    try:
        return load_spec(p)
    except SculptError as e:
        _one_line(e)
        return None


def _mutate(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    b = bytearray(data)
    for pos, byte in edits:
        if b:
            b[pos % len(b)] = byte
    return bytes(b)


@settings(max_examples=250, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.one_of(
    st.binary(max_size=600),
    st.builds(_mutate, st.just(BASE_TEXT.encode()), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)),
                                                             min_size=1, max_size=6)),
    st.builds(lambda head, tail: head + BASE_TEXT.encode() + tail, st.binary(max_size=40), st.binary(max_size=40)),
))
def test_fuzz_spec_bytes(tmp_path: Path, raw: bytes) -> None:
    p = tmp_path / "sculpt.yaml"
    p.write_bytes(raw)
    _load(p)


# (snippet appended to a valid spec, must it be refused?): a repeated top-level key always must
YAML_SNIPPETS: list[tuple[str, bool]] = [
    ("lb: {drain_s: .inf}", True), ("fleet: web", True), ("regions: [local-b]", True),
    ("tick_s: .inf", True), ("tick_s: .nan", True), ("aggressiveness: 1e400", True),
    ("budget_usd_per_hour: -.inf", True), ("app: {command: []}", True), ("app: {command: ''}", True),
    ("x: &a [*a]", True), ("tags: !!python/object:os.system {}", True), ("--- \n---", True),
    ("tags: {? [a, b] : c}", True), ("tags: " + "[" * 5000 + "]" * 5000, True), ("'", True), ("{", True),
    ("*x", True), ("\t", False), ("tick_s: 0x10", False), ("tick_s: 1_0", False),
    ("tags: {a: !!binary aGVsbG8=}", False), ("policy: {max_migrations_per_day: 1e24}", True),
]
special = st.sampled_from([math.inf, -math.inf, math.nan, 1e24, 10**24, 1e308, "1e24", ".inf", [], ""])


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(PATHS), value=st.one_of(special, values),
       snippet=st.one_of(st.none(), st.sampled_from(YAML_SNIPPETS)))
def test_fuzz_spec_structures(tmp_path: Path, path: tuple[str, ...], value: Any,
                              snippet: tuple[str, bool] | None) -> None:
    try:
        text = yaml.safe_dump(_with(BASE, path, value), allow_unicode=True)
    except yaml.YAMLError:
        return
    if snippet is not None:
        text = text + snippet[0] + "\n"
    p = tmp_path / "sculpt.yaml"
    p.write_text(text, encoding="utf-8")
    spec = _load(p)
    if snippet is not None and snippet[1]:
        assert spec is None, f"accepted {snippet[0]!r}"
    if spec is not None:  # what was accepted is sane: finite, bounded, storable as strict JSON
        json.dumps(spec.model_dump(), allow_nan=False)
        assert FleetSpec.model_validate(spec.model_dump(mode="json")) == spec
        assert spec.lb.pause_max_ms <= 600_000 and spec.lb.drain_s <= 3600 and spec.replicas.max <= 1000
        assert spec.app.command is None or (spec.app.command and spec.app.command[0].strip())


def _tree_hash(d: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(d.rglob("*")) if d.exists() else []:
        h.update(str(f).encode())
        if f.is_file():
            h.update(f.read_bytes())
    return h.hexdigest()


def _cli(args: list[str]) -> tuple[int, str]:
    r = CliRunner().invoke(app, args)
    assert "Traceback" not in r.output, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), (r.output, repr(r.exception))
    return r.exit_code, r.stderr


# a stack that has history: a refused spec must leave it exactly as it was
CLI_PATHS = [p for p in PATHS if p[0] not in ("catalog_file",)]


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(CLI_PATHS), value=values, garble=st.booleans())
def test_fuzz_spec_through_preview_and_up(tmp_path_factory: Any, path: tuple[str, ...], value: Any,
                                         garble: bool) -> None:
    import os

    home = tmp_path_factory.mktemp("home")
    os.environ["SCULPT_HOME"] = str(home)
    try:
        p = home.parent / f"{home.name}.yaml"
        try:
            text = yaml.safe_dump(_with(BASE, path, value), allow_unicode=True)
        except yaml.YAMLError:
            return
        raw = text.encode()
        if garble:
            raw = raw[: len(raw) // 2] + b"\xff: [\n" + raw[len(raw) // 2:]
        p.write_bytes(raw)
        ok = _load(p) is not None
        before = _tree_hash(home)
        code, err = _cli(["preview", "--spec", str(p)])
        errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
        if ok and code in (0, 3):
            assert errors == []
        else:
            assert code in (1, 2) and len(errors) == 1 and "To fix:" in errors[0], (code, err)
        if not ok:  # `up` refuses the same spec in one line, before it starts anything or writes state
            code, err = _cli(["up", "--spec", str(p)])
            errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
            assert code in (1, 2) and len(errors) == 1, (code, err)
            assert _tree_hash(home) == before
    finally:
        os.environ.pop("SCULPT_HOME", None)
