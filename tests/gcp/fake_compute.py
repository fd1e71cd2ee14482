"""A test double of the Compute Engine REST API at the network boundary, and of what a GCP stack update leaves.

``FakeCompute`` is a real HTTP server on 127.0.0.1 (a thread) that answers the two calls sculpt makes, in
the API's JSON shapes: ``POST .../regions/{r}/instanceGroupManagers/{g}/listManagedInstances`` (pages of
``page_size`` with ``nextPageToken``) and ``GET .../zones/{z}/instances/{name}``. It checks the bearer
token (401 otherwise) and can be told to answer the next requests with given statuses (429, 503, ...), to
refuse everything (403), and to page small. Every request is recorded. ``POST /token`` plays an OAuth token
endpoint (what google-auth calls to refresh Application Default Credentials).

``FakeGcpStack.render`` is given to the ``pulumi`` CLI double (tests/pulumi/cli_double.py) as its ``render``:
for the fleet an update applied it plays what the GCP program would leave in the cloud — one regional MIG
per colour with one instance per slot (new slots get a new instance that shows ``CREATING`` in its first
``boot_listings`` listings of the group — a morph's health poll lists twice — and then is healthy; slots that left have their instance deleted, shown ``DELETING`` for one
listing) — and answers ``stack output`` as the program's exports would (``managed_groups`` with the MIG's
generated name, region and project). The double knows which instance it created for which slot; the code
under test does not (MIG instances have no slot identity). Nothing here is Google's code or behaviour.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlparse

from tests.gcp.fake_http import send_json, serve

TOKEN = "fake-token"


@dataclass
class FakeVm:
    name: str
    zone: str
    ip: str
    boot_listings: int = 1  # listings left before it is RUNNING and HEALTHY
    broken: bool = False  # RUNNING but its health check never passes
    deleting: bool = False

    def row(self, base: str, project: str) -> dict[str, Any]:
        link = f"{base}/projects/{project}/zones/{self.zone}/instances/{self.name}"
        if self.deleting:
            return {"instance": link, "name": self.name, "instanceStatus": "STOPPING", "currentAction": "DELETING"}
        if self.boot_listings > 0:
            return {"instance": link, "name": self.name, "instanceStatus": "STAGING", "currentAction": "CREATING"}
        health = "UNHEALTHY" if self.broken else "HEALTHY"
        return {"instance": link, "name": self.name, "instanceStatus": "RUNNING", "currentAction": "NONE",
                "version": {"instanceTemplate": f"{base}/templates/t", "name": "shape"},
                "instanceHealth": [{"healthCheck": f"{base}/healthChecks/web-health",
                                    "detailedHealthState": health}]}


@dataclass
class FakeCompute:
    """The Compute API double (see the module docstring). ``url`` is what ``SCULPT_GCP_COMPUTE_URL`` takes."""

    token: str = TOKEN
    page_size: int = 500
    forbidden: bool = False
    fail_next: list[int] = field(default_factory=list)  # statuses for the next requests, one each
    groups: dict[tuple[str, str, str], dict[str, FakeVm]] = field(default_factory=dict)  # (project, region, name)
    requests: list[tuple[str, str, dict[str, list[str]], str]] = field(default_factory=list)  # method, path, q, auth
    issue: list[str] = field(default_factory=list)  # access tokens POST /token hands out (then `token`)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.server = serve(self._handle)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/compute/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def listings(self) -> list[str]:
        """The groups each listManagedInstances request named, in order."""
        return [p.split("/")[-2] for m, p, _, _ in self.requests if p.endswith("/listManagedInstances")]

    # -- the API ------------------------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        parsed = urlparse(h.path)
        query = parse_qs(parsed.query)
        auth = h.headers.get("Authorization", "")
        length = int(h.headers.get("Content-Length") or 0)
        if length:
            h.rfile.read(length)
        with self.lock:
            self.requests.append((method, parsed.path, query, auth))
            status, body, headers = self._reply(method, parsed.path, query, auth)
        send_json(h, status, body, headers)

    def _reply(self, method: str, path: str, query: dict[str, list[str]], auth: str
               ) -> tuple[int, dict[str, Any], dict[str, str]]:
        if path == "/token" and method == "POST":  # an OAuth token endpoint, for google-auth's refresh
            return 200, {"access_token": self.issue.pop(0) if self.issue else self.token, "expires_in": 3599,
                         "token_type": "Bearer"}, {}
        if self.fail_next:
            code = self.fail_next.pop(0)
            return code, _error(code, "Rate Limit Exceeded" if code == 429 else "Backend Error"), (
                {"Retry-After": "7"} if code == 429 else {})
        if auth != f"Bearer {self.token}":
            return 401, _error(401, "Request had invalid authentication credentials."), {}
        if self.forbidden:
            return 403, _error(403, "Required 'compute.instanceGroupManagers.get' permission for "
                                    "'projects/p/regions/r/instanceGroupManagers/g'"), {}
        base = self.url
        m = re.fullmatch(r"/compute/v1/projects/([^/]+)/regions/([^/]+)/instanceGroupManagers/([^/]+)"
                         r"/listManagedInstances", path)
        if m and method == "POST":
            vms = self.groups.get((m[1], m[2], m[3]))
            if vms is None:
                return 404, _error(404, f"The resource 'projects/{m[1]}/regions/{m[2]}/instanceGroupManagers/"
                                        f"{m[3]}' was not found"), {}
            rows = [vm.row(base, m[1]) for vm in vms.values()]
            for name in [n for n, vm in vms.items() if vm.deleting]:
                del vms[name]  # shown DELETING once, gone afterwards
            for vm in vms.values():
                vm.boot_listings = max(0, vm.boot_listings - 1)
            start = int((query.get("pageToken") or ["0"])[0])
            page = rows[start:start + self.page_size]
            out: dict[str, Any] = {"managedInstances": page} if page else {}
            if start + self.page_size < len(rows):
                out["nextPageToken"] = str(start + self.page_size)
            return 200, out, {}
        m = re.fullmatch(r"/compute/v1/projects/([^/]+)/zones/([^/]+)/instances/([^/]+)", path)
        if m and method == "GET":
            for (project, _, _), vms in self.groups.items():
                vm = vms.get(m[3])
                if project == m[1] and vm is not None and vm.zone == m[2]:
                    return 200, {"name": vm.name, "status": "RUNNING", "networkInterfaces": [
                        {"network": f"{base}/projects/{project}/global/networks/default", "networkIP": vm.ip}]}, {}
            return 404, _error(404, f"The resource 'projects/{m[1]}/zones/{m[2]}/instances/{m[3]}' was not found"), {}
        return 404, _error(404, f"the fake does not know {method} {path}"), {}


def _error(code: int, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "errors": [{"message": message, "reason": "x"}]}}


def _names(seed: int) -> Iterator[str]:
    rng = random.Random(seed)
    while True:
        yield "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(4))


class FakeGcpStack:
    """What a ``pulumi up`` of the GCP program would leave, played into ``FakeCompute`` (module docstring)."""

    def __init__(self, compute: FakeCompute, *, boot_listings: int = 3, seed: int = 7) -> None:
        self.compute = compute
        self.boot_listings = boot_listings
        self.suffixes = _names(seed)  # instance name suffixes (MIGs pick random ones)
        self.ips = (f"10.128.0.{i}" for i in itertools.count(2))
        self.vms: dict[str, tuple[tuple[str, str, str], str]] = {}  # slot -> (group key, vm name): the double's own
        self.broken: set[str] = set()  # slots whose instance never passes its health check
        self.group_names: dict[str, str] = {}  # colour -> MIG name (generated once, as Pulumi auto-names)
        self.ip_of: dict[str, str] = {}  # slot -> private IP to give its instance (default: 10.128.0.N)

    def vm(self, slot: str) -> FakeVm:
        key, name = self.vms[slot]
        return self.compute.groups[key][name]

    def render(self, config: dict[str, str]) -> dict[str, Any]:
        fleet = json.loads(config["sculpt:fleet"])
        region = config["gcp:region"]
        project = config.get("gcp:project") or os.environ.get("GOOGLE_PROJECT") or None
        slots = {s["id"]: s for s in fleet["slots"]}
        with self.compute.lock:
            for sid in [k for k in self.vms if k not in slots]:
                key, name = self.vms.pop(sid)
                self.compute.groups[key][name].deleting = True
            managed: dict[str, Any] = {"blue": None, "green": None}
            for colour in ("blue", "green"):
                mine = sorted(s for s, row in slots.items() if row["colour"] == colour)
                if not mine:
                    continue
                if colour not in self.group_names:
                    self.group_names[colour] = f"web-{colour}-{next(self.suffixes)}0a1"
                name = self.group_names[colour]
                key = (str(project), region, name)
                group = self.compute.groups.setdefault(key, {})
                for sid in mine:
                    if sid in self.vms:
                        continue
                    vm = FakeVm(f"web-{colour}-{next(self.suffixes)}", f"{region}-{'abc'[len(self.vms) % 3]}",
                                self.ip_of.get(sid) or next(self.ips), boot_listings=self.boot_listings,
                                broken=sid in self.broken)
                    group[vm.name] = vm
                    self.vms[sid] = (key, vm.name)
                managed[colour] = {"name": name, "region": region, "project": project}
        weights = {c: sum(s["weight"] for s in slots.values() if s["colour"] == c) for c in ("blue", "green")}
        return {"url": "http://203.0.113.10:80", "weights": weights, "managed_groups": managed,
                "instance_groups": {c: f"{self.compute.url}/igs/{m['name']}" if m else None
                                    for c, m in managed.items()},
                "backend_services": {c: f"{self.compute.url}/backendServices/web-{c}" if m else None
                                     for c, m in managed.items()}}
