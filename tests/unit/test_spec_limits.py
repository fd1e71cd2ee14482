"""Spec limits (issue 14): every bad spec file is one ``ConfigError`` naming the file or field and the fix —
not UTF-8, too deep, a directory, unreadable, over 1 MB, a repeated key, an unknown region, an empty
command, a non-finite or absurd number — and ``sculpt up``/``preview``/``policy check`` print exactly one
``error:`` line for them (``policy check --plan`` too, for a plan whose action lacks ``kind``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sculpt.catalog import load_catalog
from sculpt.cli.main import app
from sculpt.domain.errors import ConfigError, NotFoundError, SculptError
from sculpt.domain.spec import MAX_SPEC_BYTES, check_regions, load_spec, parse_spec

BASE = "fleet: web\nshape: std-0.5c-512m\nregion: local-a\n"


def _write(tmp_path: Path, raw: bytes | str, name: str = "sculpt.yaml") -> Path:
    p = tmp_path / name
    p.write_bytes(raw.encode() if isinstance(raw, str) else raw)
    return p


def _refused(p: Path) -> str:
    with pytest.raises(ConfigError) as e:
        load_spec(p)
    text = str(e.value)
    assert "\n" not in text and "To fix:" in text, text
    return text


@pytest.mark.parametrize(("raw", "says"), [
    ((BASE + "tags: {owner: caf\xe9}\n").encode("latin-1"), "is not UTF-8 text (byte 0xe9 at line 4)"),
    (bytes(range(128, 256)) * 8, "is not UTF-8 text (byte 0x80 at line 1)"),
    (BASE + "tags: " + "[" * 20_000 + "]" * 20_000 + "\n", "nests too deeply"),
    (BASE + "x: " + "{a: " * 20_000 + "1" + "}" * 20_000 + "\n", "nests too deeply"),
    (BASE + "tags: {a: b}\x00\n", "character U+0000 at line 4 is not allowed"),
])
def test_a_file_that_is_not_a_spec_is_one_line(tmp_path: Path, raw: bytes | str, says: str) -> None:
    p = _write(tmp_path, raw)
    text = _refused(p)
    assert says in text and str(p) in text


def test_a_directory_a_missing_file_and_an_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "is a directory" in _refused(tmp_path)
    with pytest.raises(NotFoundError, match="no fleet spec at"):
        load_spec(tmp_path / "nope.yaml")
    p = _write(tmp_path, BASE)

    def denied(*_a: object, **_k: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "open", denied)
    text = _refused(p)
    assert "permission denied" in text and "chmod u+r" in text


def test_specs_over_a_megabyte_are_refused_before_parsing(tmp_path: Path) -> None:
    # a 2 MB comment: refused on its size, whatever the YAML says
    text = _refused(_write(tmp_path, BASE + "#" * (2 * MAX_SPEC_BYTES) + "\n"))
    assert "larger than 1 MB" in text
    # just under the limit is fine (a long comment is still a spec)
    ok = _write(tmp_path, BASE + "#" * (MAX_SPEC_BYTES - len(BASE) - 2) + "\n", "ok.yaml")
    assert load_spec(ok).fleet == "web"
    # a device that never ends is read bounded, not into memory
    assert "larger than 1 MB" in _refused(Path("/dev/zero"))


@pytest.mark.parametrize(("yaml_text", "says"), [
    (BASE + "lb:\n  drain_s: 1\n  drain_s: 2\n", "key 'drain_s' appears twice in one mapping (lines 5 and 6)"),
    (BASE + "lb: {drain_s: 1, drain_s: 2}\n", "key 'drain_s' appears twice in one mapping (line 4)"),
    (BASE + "fleet: api\n", "key 'fleet' appears twice in one mapping (lines 1 and 4)"),
    (BASE + "tags: {1: a, 1.0: b}\n", "key '1.0' appears twice"),  # equal keys, as YAML compares them
])
def test_a_repeated_key_is_refused_naming_the_key_and_lines(tmp_path: Path, yaml_text: str, says: str) -> None:
    assert says in _refused(_write(tmp_path, yaml_text))


def test_merge_keys_still_work(tmp_path: Path) -> None:
    spec = load_spec(_write(tmp_path, BASE + "tags: &t {team: a}\npolicy:\n  required_tags:\n    <<: *t\n"
                                             "    env: prod\n"))
    assert spec.policy.required_tags == {"team": "a", "env": "prod"}


@pytest.mark.parametrize(("yaml_text", "field", "says"), [
    ("lb: {drain_s: .inf}", "lb.drain_s", "finite number"),
    ("lb: {drain_s: -.inf}", "lb.drain_s", "finite number"),
    ("slo: {p95_latency_ms: .nan}", "slo.p95_latency_ms", "finite number"),
    ("aggressiveness: 1e400", "aggressiveness", "finite number"),
    ("tick_s: .inf", "tick_s", "finite number"),
    ("budget_usd_per_hour: .inf", "budget_usd_per_hour", "finite number"),
    ("lb: {pause_max_ms: .inf}", "lb.pause_max_ms", "finite number"),
    ("lb: {pause_max_ms: 1e24}", "lb.pause_max_ms", "valid integer"),
    ("lb: {pause_max_ms: 1000000000000000000000000}", "lb.pause_max_ms", "less than or equal to 600000"),
    ("lb: {drain_s: 1.0e6}", "lb.drain_s", "less than or equal to 3600"),
    ("slo: {p95_latency_ms: 1.0e12}", "slo.p95_latency_ms", "less than or equal to 600000"),
    ("budget_usd_per_hour: 1.0e300", "budget_usd_per_hour", "less than or equal to 1000000"),
    ("replicas: {max: 100000}", "replicas.max", "less than or equal to 1000"),
    ("policy: {max_migrations_per_day: 100000}", "policy.max_migrations_per_day", "less than or equal to 1440"),
    ("policy: {change_windows: [{start: '24:30'}]}", "policy.change_windows.0.start", "is not a time"),
    ("app: {command: []}", "app.command", "the command is empty"),
    ("app: {command: ''}", "app.command", "the command is empty"),
    ("app: {command: ['  ']}", "app.command", "the command is empty"),
    ("policy: {change_windows: [{start: \"a\\nb\"}]}", "policy.change_windows.0.start", "'a\\nb' is not a time"),
])
def test_bad_values_name_the_field(tmp_path: Path, yaml_text: str, field: str, says: str) -> None:
    text = _refused(_write(tmp_path, BASE + yaml_text + "\n"))
    assert f"field '{field}'" in text and says in text, text


def test_an_unknown_key_with_a_newline_stays_on_one_line() -> None:
    with pytest.raises(ConfigError) as e:
        parse_spec({"fleet": "web", "shape": "s", "region": "r", "bad\nkey": 1})
    assert "\n" not in str(e.value) and "bad\\nkey" in str(e.value)


def test_sane_values_at_the_bounds_pass(tmp_path: Path) -> None:
    spec = load_spec(_write(tmp_path, BASE + "lb: {drain_s: 3600, pause_max_ms: 600000}\n"
                                             "app: {command: 'python app.py --port {port}'}\n"
                                             "policy: {change_windows: [{start: '02:00', end: '24:00'}]}\n"))
    assert spec.lb.pause_max_ms == 600_000 and spec.app.command == ["python", "app.py", "--port", "{port}"]


def test_regions_are_checked_against_the_providers_catalog() -> None:
    regions = load_catalog("local").regions()
    ok = parse_spec({"fleet": "web", "shape": "std-0.5c-512m", "region": "local-a", "regions": ["local-b"]})
    check_regions(ok, regions)
    bad = ok.with_changes(regions=["local-b", "local-z"])
    with pytest.raises(ConfigError, match=r"field 'regions.1': unknown region 'local-z' for provider 'local'. "
                                          r"To fix: use one of: local-a, local-b"):
        check_regions(bad, regions)
    with pytest.raises(ConfigError, match="field 'region': unknown region 'mars-1'"):
        check_regions(ok.with_changes(region="mars-1", regions=[]), regions)


# -- through the CLI, in-process: one `error:` line, exit 1, nothing written --------------------------------
def _one_error(args: list[str], code: int = 1) -> str:
    r = CliRunner().invoke(app, args)
    assert r.exit_code == code, (r.exit_code, r.output, r.exception)
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in r.output, r.output
    return errors[0]


@pytest.mark.parametrize("verb", ["up", "preview", "plan", "watch", "policy"])
@pytest.mark.parametrize("raw", [
    b"fleet: web\nshape: std-0.5c-512m\nregion: local-a\ntags: {a: caf\xe9}\n",
    b"fleet: web\nshape: std-0.5c-512m\nregion: local-a\nlb: {drain_s: .inf}\n",
    b"fleet: web\nshape: std-0.5c-512m\nregion: local-a\nregion: local-b\n",
    b"[" * 20_000,
])
def test_verbs_print_one_error_line_and_write_nothing(tmp_path: Path, sculpt_home: Path, verb: str,
                                                      raw: bytes) -> None:
    p = _write(tmp_path, raw)
    args = {"policy": ["policy", "check"], "watch": ["watch", "--once"]}.get(verb, [verb])
    line = _one_error([*args, "--spec", str(p)])
    assert str(p) in line and "To fix:" in line
    assert not sculpt_home.exists() or not (sculpt_home / "ledger.db").exists()


def test_up_refuses_an_unknown_region_in_policy_check(tmp_path: Path, sculpt_home: Path) -> None:
    p = _write(tmp_path, BASE + "regions: [local-b, local-z]\n")
    assert "field 'regions.1': unknown region 'local-z'" in _one_error(["policy", "check", "--spec", str(p)])


@pytest.mark.parametrize(("plan", "says"), [
    ({"stack": "web", "actions": [{"slot": "web-0", "to_shape": "std-1c-1024m"}]}, "action 0: field 'kind' is required"),
    ({"stack": "web", "actions": [{"kind": "scale", "replicas": 1}, "resize"]}, "action 1 is not an object"),
    ({"stack": "web", "actions": [{"kind": "zap"}]}, "action 0: field 'kind': Input should be"),
    ({"stack": "web", "actions": [{"kind": "scale", "replicas": 10**9}]}, "field 'replicas' is 1000000000, not 0..1000"),
    ({"stack": "web", "actions": [{"kind": "scale", "replicas": -1}]}, "field 'replicas' is -1"),
    ({"stack": "web", "actions": [{"kind": "scale", "replicas": "many"}]}, "action 0: field 'replicas': Input should"),
])
def test_policy_check_names_the_bad_action(tmp_path: Path, sculpt_home: Path, plan: dict[str, object],
                                           says: str) -> None:
    spec = _write(tmp_path, BASE)
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(plan))
    line = _one_error(["policy", "check", "--spec", str(spec), "--plan", str(plan_file)])
    assert says in line and str(plan_file) in line, line


@pytest.mark.parametrize("content", [b'{"actions": [], "confidence": NaN}', b"\xff\xfe", b"[" * 100_000, None])
def test_policy_check_refuses_a_plan_that_is_not_json(tmp_path: Path, sculpt_home: Path,
                                                      content: bytes | None) -> None:
    spec = _write(tmp_path, BASE)
    plan_file = tmp_path / "plan.json"
    if content is None:
        plan_file.mkdir()  # a directory
    else:
        plan_file.write_bytes(content)
    line = _one_error(["policy", "check", "--spec", str(spec), "--plan", str(plan_file)])
    assert str(plan_file) in line and ("is not JSON" in line or "is a directory" in line)


def test_a_good_spec_still_loads(tmp_path: Path) -> None:
    try:
        spec = load_spec(_write(tmp_path, BASE + "regions: [local-b]\nlb: {drain_s: 0}\n"))
    except SculptError as e:  # pragma: no cover - the message is the failure
        pytest.fail(str(e))
    assert spec.allowed_regions == ["local-a", "local-b"]


def test_a_stored_spec_an_older_sculpt_accepted_still_reads(caplog: pytest.LogCaptureFixture) -> None:
    """Versions recorded before these limits (``drain_s: inf``, ``pause_max_ms: 1e24``, ``command: []``) must
    not brick ``down``/``status``: the refused fields read as their defaults, each with a warning."""
    import math

    from sculpt.domain.spec import parse_stored_spec

    old = {"fleet": "web", "shape": "std-0.5c-512m", "region": "local-a", "regions": ["local-b"],
           "lb": {"drain_s": math.inf, "pause_max_ms": 10**24, "routing": "hash"}, "app": {"command": []},
           "policy": {"change_windows": [{"start": "24:30"}]}}
    with pytest.raises(ConfigError):
        parse_spec(old, "version 1 of stack 'web'")
    spec = parse_stored_spec(old, "version 1 of stack 'web'")
    assert (spec.lb.drain_s, spec.lb.pause_max_ms, spec.lb.routing) == (5.0, 2000, "hash")
    assert spec.app.command is None and spec.policy.change_windows == [] and spec.regions == ["local-b"]
    warned = " ".join(caplog.messages)
    assert "field 'lb.drain_s' is no longer valid" in warned and "field 'app.command'" in warned
    # the identity is never guessed
    with pytest.raises(ConfigError, match="field 'region'"):
        parse_stored_spec({**old, "region": math.nan}, "version 1 of stack 'web'")
