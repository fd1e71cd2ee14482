"""Decisions as events: what the sculptor decided and did, for people and for other systems.

The record itself is the ledger's ``events`` table (append-only; moves and the rollbacks of failed
migrations are written there in the same transaction as the move or the migration's end, so an event is
never missing for something that happened). This module adds what is not storage:

* ``DecisionEvents`` turns the sculptor's per-tick plans into ``decision`` and ``policy-block`` events, one
  per change of mind (a fleet holding for a day is one event, not 8,640);
* ``Webhook`` delivers the stack's events, in order, to the spec's ``events.webhook_url`` as JSON (one
  ``POST`` per event), retried with exponential backoff. Delivery is at least once: the ledger keeps a
  cursor per stack and URL that moves only past a 2xx answer, so an event a receiver missed while it was
  down (or while no sculpt command ran) is sent by the next command or tick; receivers deduplicate on
  ``seq``.

An event is ``{"seq", "time", "stack", "kind", "summary", "data"}``: ``kind`` is one of ``decision``,
``policy-block``, ``move``, ``rollback``; ``summary`` is one line for people; ``data`` the numbers
(``sculpt events --json`` prints the same objects).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, Protocol

from sculpt.domain.plan import Decision, Plan
from sculpt.ledger import Event

log = logging.getLogger("sculpt.events")

POST_TIMEOUT_S = 5.0
FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 60.0


class EventStore(Protocol):
    """The part of the ledger events need."""

    def append_event(self, stack: str, kind: str, summary: str, data: dict[str, Any] | None = None,
                     when: float | None = None) -> int: ...

    def events(self, stack: str | None = None, after: int = 0, kinds: tuple[str, ...] = (),
               limit: int | None = None) -> list[Event]: ...

    def event_cursor(self, stack: str, sink: str) -> int: ...

    def set_event_cursor(self, stack: str, sink: str, seq: int) -> None: ...


class DecisionEvents:
    """Records a ``decision`` event when the fleet's plan changes its mind (its decision or its actions
    differ from the last one recorded by this process) and a ``policy-block`` event when a mandatory policy
    rule blocks a change; the first plan after a start is always recorded."""

    def __init__(self, store: EventStore, stack: str) -> None:
        self.store, self.stack = store, stack
        self._last: tuple[Any, ...] | None = None

    def observe(self, plan: Plan, now: float, *, executed: str | None = None) -> int | None:
        """Record ``plan`` if it is news; ``executed`` says what the loop did about it (e.g. "in place",
        "rolled_back"). Returns the event's ``seq``, or None when nothing was recorded."""
        key = (plan.decision, tuple((a.kind, a.slot, a.to_shape, a.to_region) for a in plan.actions))
        if key == self._last and executed is None:
            return None
        self._last = key
        blocked = [r for r in plan.policy if not r.passed and r.level == "mandatory"]
        kind = "policy-block" if plan.decision is Decision.BLOCKED or (blocked and plan.actions) else "decision"
        summary = f"{plan.decision.value}: {plan.reason}"
        if kind == "policy-block":
            summary = f"blocked by {', '.join(r.rule for r in blocked) or 'policy'}: {plan.reason}"
        data: dict[str, Any] = {
            "decision": plan.decision.value, "reason": plan.reason,
            "actions": [a.model_dump(mode="json") for a in plan.actions],
            "expected_monthly_delta_usd": plan.expected_monthly_delta_usd, "risk": plan.risk,
            "confidence": plan.confidence, "urgent": plan.urgent,
            "policy": [{"rule": r.rule, "passed": r.passed, "level": r.level, "message": r.message}
                       for r in plan.policy if not r.passed],
        }
        if executed is not None:
            data["executed"] = executed
        try:
            return self.store.append_event(self.stack, kind, summary, data, when=now)
        except Exception as e:  # noqa: BLE001 - the event record must never stop the loop
            log.warning("could not record the %s event: %s", kind, e)
            return None


Post = Callable[[str, bytes, dict[str, str]], int]


def http_post(url: str, body: bytes, headers: dict[str, str]) -> int:
    """POST ``body`` to ``url``; the HTTP status (a refused or timed-out connection is 0)."""
    req = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=POST_TIMEOUT_S) as r:  # noqa: S310 - the user's own URL
            return int(r.status)
    except urllib.error.HTTPError as e:
        e.close()
        return int(e.code)
    except (urllib.error.URLError, OSError, ValueError) as e:
        log.debug("webhook %s: %s", url, e)
        return 0


class Webhook:
    """Delivers ``stack``'s events to ``url`` in ``seq`` order, each retried with exponential backoff
    (0.5 s doubling to 60 s) until it is answered 2xx or the call's time budget runs out; what is left is
    sent by the next call (the cursor is in the ledger)."""

    def __init__(self, store: EventStore, stack: str, url: str, *, post: Post = http_post,
                 sleep: Callable[[float], None] = time.sleep,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.store, self.stack, self.url = store, stack, url
        self.post, self.sleep, self.monotonic = post, sleep, monotonic
        self.failures = 0

    def deliver(self, budget_s: float = 10.0) -> int:
        """Send what is pending within ``budget_s`` seconds; returns how many events were delivered."""
        deadline = self.monotonic() + budget_s
        sent = 0
        cursor = self.store.event_cursor(self.stack, self.url)
        for ev in self.store.events(self.stack, after=cursor):
            if not self._send(ev, deadline):
                break
            self.store.set_event_cursor(self.stack, self.url, ev.seq)
            sent += 1
        return sent

    def _send(self, ev: Event, deadline: float) -> bool:
        body = json.dumps(ev.to_json(), allow_nan=False, default=str).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "sculpt", "X-Sculpt-Event": ev.kind,
                   "X-Sculpt-Event-Seq": str(ev.seq)}
        backoff = FIRST_BACKOFF_S
        while True:
            status = self.post(self.url, body, headers)
            if 200 <= status < 300:
                self.failures = 0
                return True
            self.failures += 1
            if self.failures in (1, 10) or self.failures % 100 == 0:
                log.warning("webhook %s answered %s for event %d; retrying with backoff", self.url,
                            status or "nothing", ev.seq)
            if self.monotonic() + backoff > deadline:
                return False
            self.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)


class WebhookThread:
    """``Webhook.deliver`` in a daemon thread for long-running commands (``sculpt watch``): woken by
    ``kick()`` after each tick, and at least every ``period_s``."""

    def __init__(self, hook: Webhook, period_s: float = 10.0) -> None:
        self.hook, self.period_s = hook, period_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sculpt-webhook", daemon=True)

    def start(self) -> WebhookThread:
        self._thread.start()
        return self

    def kick(self) -> None:
        self._wake.set()

    def stop(self, flush_s: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=flush_s + POST_TIMEOUT_S)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.period_s)
            self._wake.clear()
            try:
                self.hook.deliver(budget_s=self.period_s if not self._stop.is_set() else 0.0)
            except Exception as e:  # noqa: BLE001 - delivery must never take the controller down
                log.warning("webhook delivery failed: %s", e)


def flush(store: EventStore, stack: str, url: str | None, budget_s: float = 5.0) -> int:
    """Deliver ``stack``'s pending events once, at the end of a command (no-op without a URL)."""
    if not url:
        return 0
    try:
        return Webhook(store, stack, url).deliver(budget_s)
    except Exception as e:  # noqa: BLE001 - a command's result does not depend on its webhook
        log.warning("webhook delivery failed: %s", e)
        return 0
