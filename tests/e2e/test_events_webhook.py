"""Events through real commands: a morph and a rollback on a real local fleet are recorded as events and
POSTed to the spec's webhook (a real HTTP receiver), in order, each once; ``sculpt events`` shows them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from tests.e2e.cli_user import Cli
from tests.helpers import serving

pytestmark = pytest.mark.e2e



class _Receiver(BaseHTTPRequestHandler):
    got: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).got.append(body)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    handler = type("R", (_Receiver,), {"got": []})
    with serving(handler) as url:
        yield f"{url}/sculpt", handler.got


def test_a_morph_and_a_rollback_reach_the_webhook_in_order(cli: Cli, receiver: tuple[str, list[dict[str, Any]]]) -> None:
    url, got = receiver
    cli.spec.write_text(cli.spec.read_text() + f"events:\n  webhook_url: {url}\n")
    cli.json("up")
    cli.json("morph", "--shape", "std-1c-1024m")
    moves = [e for e in got if e["kind"] == "move"]
    assert [(e["data"]["from_shape"], e["data"]["to_shape"], e["data"]["origin"]) for e in moves] == [
        ("std-0.5c-512m", "std-1c-1024m", "morph")]
    cli.json("rollback")
    kinds = [e["kind"] for e in got]
    assert kinds[-2:] == ["move", "rollback"], kinds
    assert got[-2]["data"]["to_shape"] == "std-0.5c-512m" and got[-2]["data"]["origin"] == "rollback"
    seqs = [e["seq"] for e in got]
    assert seqs == sorted(set(seqs)), "each event once, in order"
    listed = cli.json("events")
    assert [e["seq"] for e in listed] == seqs  # what the receiver got is the whole record
