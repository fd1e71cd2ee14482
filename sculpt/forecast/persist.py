"""Checkpoints: save a predictor to the ledger and resume it after a restart, or start fresh if it will not load.

Why it exists: models learn continuously; a restart must not throw that away, and a corrupt or
incompatible checkpoint must never stop the controller. ``restore`` returns the resumed model, or a fresh
one plus a one-line note saying why (for the log and ``sculpt status``). The store is anything with the
ledger's ``save_checkpoint``/``load_checkpoint`` methods (``sculpt.ledger.Ledger``), so this module does not
import the ledger package.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from sculpt.forecast.base import Predictor

log = logging.getLogger(__name__)


class CheckpointStore(Protocol):
    def save_checkpoint(self, key: str, model: str, blob: bytes, meta: dict[str, Any] | None = None) -> None: ...

    def load_checkpoint(self, key: str, model: str) -> tuple[bytes, dict[str, Any]] | None: ...


def save(store: CheckpointStore, key: str, predictor: Predictor) -> int:
    """Write ``predictor`` under (``key``, its name); returns the blob size in bytes."""
    blob = predictor.dumps()
    stats = getattr(predictor, "stats", None)
    meta = stats() if callable(stats) else {}
    store.save_checkpoint(key, predictor.name, blob, {"bytes": len(blob), **meta})
    return len(blob)


def restore(store: CheckpointStore, key: str, name: str, **options: Any) -> tuple[Predictor, str | None]:
    """The checkpointed model ``name`` under ``key``; a fresh one (and a note) if absent or unloadable."""
    from sculpt.forecast import make_predictor

    row = store.load_checkpoint(key, name)
    if row is None:
        return make_predictor(name, **options), None
    p = make_predictor(name, **options)
    try:
        p.loads(row[0])
    except Exception as e:  # noqa: BLE001 - a bad checkpoint is reported, never fatal
        note = f"model checkpoint '{key}/{name}' could not be loaded ({e}); started a fresh {name} model"
        log.warning(note)
        return make_predictor(name, **options), note
    return p, None
