"""Composition: the live sculptor of a stack, wired from its ``sculpt.yaml``.

Why it exists: ``sculpt watch``, ``sculpt plan``, the API and the demo all need the same wiring: the
stack's engine and ledger (``sculpt.app.wiring.wire``), the watch lock (``"<stack>:watch"``: a second
watcher refuses), recovery of a morph a dead controller left half-done, the model checkpoint (or the
trained cold-start prior), the metric source, the actuator of the mode, and the decision events. The
loop itself is ``sculpt.loop``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sculpt.app.events import DecisionEvents, Webhook, WebhookThread
from sculpt.decide.cost import CostModel, cost_model_for
from sculpt.domain.clock import Clock
from sculpt.domain.errors import ConfigError, SculptError
from sculpt.domain.spec import FleetSpec
from sculpt.forecast.guard import switch_profile
from sculpt.loop.live import AgentFleetView, EngineFleetView, FleetView, LivePort
from sculpt.loop.service import (
    AUTO_BACKFILL_H,
    Mode,
    SculptorService,
    checkpoint_key,
    stream_names,
    watch_lock,
)
from sculpt.metrics.readings import RangeReadings, make_readings
from sculpt.migrate.actuator import Actuator, OrchestratorActuator, Recommender

if TYPE_CHECKING:
    from sculpt.app.cloud import CloudWiring
    from sculpt.ledger import Ledger
    from sculpt.migrate.port import Platform


@dataclass
class Opened:
    """A service wired to a stack, and what must be released when done."""

    service: SculptorService
    wiring: Any
    notes: list[str] = field(default_factory=list)
    locked: bool = False
    save: bool = True

    def close(self) -> None:
        try:
            if self.service.webhook is not None:
                self.service.webhook.stop()
            if self.save:
                self.service.checkpoint()
        finally:
            if self.locked:
                self.wiring.ledger.release(watch_lock(self.wiring.stack))
            self.wiring.close()


REQUIREMENT_FIELDS = ("profile", "slo", "budget_usd_per_hour", "aggressiveness")


def api_requirements(ledger: Ledger, stack: str, spec: FleetSpec, spec_path: Any) -> tuple[FleetSpec, str | None]:
    """Requirements changed through the API (a ``requirements`` stack version) survive a restart unless
    sculpt.yaml was edited after them: the newer word wins."""
    last = next((v for v in reversed(ledger.versions(stack)) if v.kind == "requirements"), None)
    if last is None:
        return spec, None
    try:
        edited = os.path.getmtime(spec_path) if spec_path is not None else 0.0
    except OSError:
        edited = 0.0
    if edited > last.time:
        return spec, None
    changes = {k: last.spec[k] for k in REQUIREMENT_FIELDS if k in last.spec}
    try:
        new = spec.with_changes(**changes)
    except Exception:  # noqa: BLE001 - an unreadable old version never stops the watcher
        return spec, None
    if new == spec:
        return spec, None
    return new, f"requirements set through the API (version {last.version}) override sculpt.yaml's"


def open_service(spec_path: Any, *, mode: Mode = "recommend", model: str = "ensemble", source: str = "local",
                 clock: Clock | None = None, cost: CostModel | None = None, lock: bool = True,
                 recover: bool = True, progress: Any = None, timeouts: Any = None, seed: int = 0,
                 save: bool = True, backfill_h: float | None = None) -> Opened:
    """Wire the live sculptor of the stack in ``spec_path``: lock, recovery, checkpoint, port, actuator.

    ``lock`` takes ``"<stack>:watch"`` (a second watcher gets ``LockedError``); ``recover`` finishes or
    rolls back a morph a dead controller left half-done. ``backfill_h``: hours of the range source's history
    to learn before the first tick; ``None`` means ``AUTO_BACKFILL_H`` when no model checkpoint was resumed
    and the source keeps history (Prometheus, CloudWatch), else none.
    """
    from sculpt.app.wiring import wire
    from sculpt.forecast import persist

    w = wire(spec_path)
    notes: list[str] = []
    locked = False
    try:
        spec = w.spec
        assert spec is not None
        if lock:
            w.ledger.acquire(watch_lock(w.stack), "sculpt watch")
            locked = True
        cloud = None
        stepwise = w.engine.stepwise()  # the local engine: an agent runs the fleet, the local platform morphs it
        if stepwise is None:  # a cloud stack: CloudWatch by slot, and the cloud morph platform (sculpt.app.cloud)
            from sculpt.app.cloud import CloudWiring

            cloud = CloudWiring.of(w.engine, w.catalog, spec, mode=mode)
        if recover:
            from sculpt.migrate import recover as _recover

            for rep in _recover(w.state_dir, w.stack, ledger=w.ledger,
                                platform=cloud.platform if cloud else None):
                notes.append(f"recovered interrupted morph {rep.migration_id}: {rep.result}")
        cm = cost or cost_model_for(spec)
        from sculpt.forecast.prior import PRIOR_MODELS, find_prior

        prior = find_prior(w.state_dir, spec.profile) if model in PRIOR_MODELS else None
        predictor, note = persist.restore(w.ledger, checkpoint_key(w.stack), model, profile=spec.profile,
                                          seed=seed, horizon_s=cm.horizon_h * 3600.0,
                                          **({"prior": str(prior)} if prior is not None else {}))
        resumed = False
        if note:
            notes.append(note)
        elif w.ledger.load_checkpoint(checkpoint_key(w.stack), model) is not None:
            notes.append(f"resumed model '{model}' from its checkpoint")
            resumed = True
        if prior is not None and not resumed:
            notes.append(f"cold-start prior {prior} answers for streams younger than two days")
        notes.extend(predictor.notes)
        view: FleetView = EngineFleetView(w.engine)
        if stepwise is not None:
            from sculpt.providers.local.client import AgentClient

            view = AgentFleetView(AgentClient(w.state_dir, w.stack))
        if mode == "auto":
            from sculpt.migrate.local import LocalPlatform

            platform: Platform = LocalPlatform(stepwise, w.state_dir) if stepwise is not None \
                else _cloud_platform(cloud)
            actuator: Actuator = OrchestratorActuator(platform, w.ledger, progress=progress,
                                                      timeouts=timeouts or (cloud.timeouts if cloud else None))
        else:
            actuator = Recommender()
        current = w.engine.current()
        live_spec = current.spec if current is not None else spec
        # the running version's spec carries the shape the fleet runs now, and the region when a region move
        # (any allowed region) took it away from sculpt.yaml's
        if live_spec.region == spec.region:
            spec = spec.with_changes(shape=live_spec.shape)
        elif live_spec.region in spec.allowed_regions:
            spec = spec.with_changes(shape=live_spec.shape, region=live_spec.region,
                                     regions=[r for r in spec.allowed_regions if r != live_spec.region])
            notes.append(f"the fleet runs in {live_spec.region} (moved there from {w.spec.region if w.spec else '?'})")
        spec, note = api_requirements(w.ledger, w.stack, spec, w.spec_path)
        if note:
            notes.append(note)
        if predictor.profile != spec.profile:  # the checkpoint is another profile's
            notes.append(f"profile changed from '{predictor.profile}' to '{spec.profile}': the "
                         "checkpointed model forecasts until the new profile's model is as confident")
            predictor = switch_profile(predictor, spec.profile, cm.horizon_h * 3600.0, cm.confidence_floor)
        by_slot = cloud.readings_source(source) if cloud else None
        readings = RangeReadings(by_slot, window_s=900.0, step_s=60.0) if by_slot is not None else make_readings(source, clock)
        port = LivePort(spec, w.catalog, view, readings, actuator,
                        stream_names(w.stack, spec.replicas.max))
        svc = SculptorService(spec, w.catalog, predictor, port, clock=clock, mode=mode, cost=cm,
                              ledger=w.ledger if save else None, moves_regions=w.engine.moves_regions)
        migs = [m for m in w.ledger.migrations(w.stack) if m.result == "done"]
        if migs:
            svc.seed_cooldown(max(m.started for m in migs))
        svc.moves = w.ledger  # the daily cap reads the one record of moves (also for `sculpt plan`)
        if lock and save:  # the stack's one watcher records its decisions and delivers the events
            svc.events = DecisionEvents(w.ledger, w.stack)
            if spec.events.webhook_url:
                svc.webhook = WebhookThread(Webhook(w.ledger, w.stack, spec.events.webhook_url),
                                            period_s=float(spec.tick_s)).start()
        svc.count_moves(svc.clock.now())
        hours = (0.0 if resumed else AUTO_BACKFILL_H) if backfill_h is None else backfill_h
        if hours > 0 and readings.keeps_history:
            try:
                n = svc.backfill(hours)
                notes.append(f"learned {n} sample(s) from the last {hours:g} h of --source {source}")
            except SculptError as e:
                notes.append(f"no backfill from --source {source}: {e}")
        return Opened(svc, w, notes, locked, save)
    except BaseException:
        if locked:
            w.ledger.release(watch_lock(w.stack))
        w.close()
        raise


def _cloud_platform(cloud: CloudWiring | None) -> Platform:
    assert cloud is not None  # wired above for every engine that is not step-wise
    if cloud.platform is None:
        raise ConfigError(f"auto mode cannot morph '{cloud.spec.fleet}': provider '{cloud.spec.provider}' has no "
                          "morph platform", "use --mode recommend")
    return cloud.platform
