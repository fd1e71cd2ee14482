"""The ensemble: river + LSTM (+ the two baselines), weighted online by pinball loss, per profile and per stream.

Why it exists: no single model wins on every stream or every week. Each member forecasts every stream;
when a period closes, the forecasts are scored with the pinball loss, and each of the four outputs
(CPU p50, CPU p95, memory p50, memory p95) has its own weights over the members:

* ``weighting="gradient"`` (default): exponentiated gradient on the pinball loss *of the combined
  forecast* (relative units), the classic online aggregation rule: a member's log-weight moves against
  the gradient ``(1[y < combined] - tau) * member / scale``, so weights follow what improves the mix, not
  only which member is best alone;
* ``weighting="loss"``: ``softmax(-ETA * loss / best_loss)`` of an EWMA of each member's own loss.

Weights exist per profile (a new stream starts with them) and per stream; a stream's own weights count
``n / (n + STREAM_HALF)`` after ``n`` scored periods. The combined quantiles are weighted averages of
the members' quantiles (quantile averaging); the 90 % interval is re-calibrated around the combined
median by the engine's conformal layer. Without torch the LSTM is left out and ``notes`` says so.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sculpt.domain.arrays import FloatArray
from sculpt.forecast.engine import PeriodPredictor

ETA = 10.0  # sharpness of the weights: a member 10 % worse than the best gets exp(-1) of its weight
DECAY = 0.97  # EWMA of losses per closed period (a half-life of about a day of hourly periods)
STREAM_HALF = 6  # scored periods at which a stream's own losses and the profile's count equally


class Ensemble(PeriodPredictor):
    """Online pinball-loss weighting of member predictors, per profile and per stream."""

    name = "ensemble"

    def __init__(self, *, members: tuple[str, ...] | None = None, weighting: str = "gradient", eg_rate: float = 1.0,
                 **kw: Any) -> None:
        super().__init__(**{k: v for k, v in kw.items() if k != "prior"})
        from sculpt.forecast import make_predictor, torch_available

        if members is None:
            members = ("river", "lstm", "last-value", "seasonal-naive")
            if not torch_available():
                members = tuple(m for m in members if m != "lstm")
                self.notes.append("torch is not installed: the ensemble runs river-only (no LSTM member)")
        sub = {k: v for k, v in kw.items() if k in ("profile", "seed", "horizon_s", "history", "close_budget")}
        prior = kw.get("prior")
        self.members: list[PeriodPredictor] = [
            make_predictor(m, **sub, **({"prior": prior} if m == "river" and prior is not None else {}))  # type: ignore[misc]
            for m in members]
        self.member_names = list(members)
        self._share_table()
        k = len(self.members)
        self.L_prof = np.zeros((4, k))  # one weight set per output: CPU p50, p95, memory p50, p95
        self.L_seen = 0
        self.L_stream = np.zeros((0, 4, k))
        self.n_scored = np.zeros(0)
        self.weighting = weighting
        self.eg_rate = eg_rate
        self.G_prof = np.zeros((4, k))  # log-weights of the gradient (exponentiated-gradient) weighting
        self.G_stream = np.zeros((0, 4, k))
        self.F_last = np.full((0, k, 4), np.nan)  # member quantiles the last combination used

    _model_fields = ("member_names", "L_prof", "L_seen", "L_stream", "n_scored", "weighting", "eg_rate", "G_prof",
                     "G_stream", "F_last")

    def _model_state(self) -> dict[str, Any]:
        st = super()._model_state()
        st["member_states"] = [m._state(with_table=False) for m in self.members]  # they share our table
        return st

    def _load_model_state(self, state: dict[str, Any]) -> None:
        from sculpt.forecast import make_predictor

        names = list(state["member_names"])
        members: list[PeriodPredictor] = []
        for name, mstate in zip(names, state["member_states"], strict=True):
            m: PeriodPredictor = make_predictor(name)  # type: ignore[assignment]
            m._restore(mstate, self.table)
            members.append(m)
        super()._load_model_state(state)
        self.members = members
        self._share_table()

    def _share_table(self) -> None:
        """Members read the ensemble's stream table: samples are validated and aggregated once, not per member."""
        for m in self.members:
            m.table = self.table

    def _ingest(self, streams: Any, t: Any, cpu: Any, mem: Any, extra: np.ndarray | None) -> None:
        idx = self.table.indices(streams)
        closed = self.table.push(idx, np.asarray(t, np.float64), np.asarray(cpu, np.float64),
                                 np.asarray(mem, np.float64), extra)
        for m in self.members:
            m._closed(closed)
        self._closed(closed)

    def weights(self, rows: np.ndarray | None = None) -> FloatArray:
        """Current weights: the profile's, shape (4 outputs, members), or per stream (len(rows), 4, members)."""
        def soft(L: np.ndarray) -> FloatArray:
            best = np.maximum(L.min(axis=-1, keepdims=True), 1e-12)
            z = -ETA * L / best
            z -= z.max(axis=-1, keepdims=True)
            e = np.exp(z)
            w: FloatArray = e / e.sum(axis=-1, keepdims=True)
            return w

        def norm(G: np.ndarray) -> FloatArray:
            z = G - G.max(axis=-1, keepdims=True)
            e = np.exp(z)
            w: FloatArray = e / e.sum(axis=-1, keepdims=True)
            return w

        grad = self.weighting == "gradient"
        if grad:
            prof = norm(self.G_prof)
        else:
            prof = soft(self.L_prof) if self.L_seen else np.full((4, len(self.members)), 1.0 / len(self.members))
        if rows is None:
            return prof
        n = self.n_scored[rows][:, None, None]
        if grad:
            own = norm(self.G_stream[rows])
        else:
            own = np.where(n > 0, soft(np.where(n > 0, self.L_stream[rows], 1.0)), prof[None])
        a = n / (n + STREAM_HALF)
        mixed: FloatArray = a * own + (1 - a) * prof[None]
        return mixed

    def _grow_rows(self) -> None:
        n = len(self.table)
        if self.L_stream.shape[0] < n:
            pad = max(n, 2 * self.L_stream.shape[0], 16) - self.L_stream.shape[0]
            self.L_stream = np.concatenate([self.L_stream, np.zeros((pad, 4, len(self.members)))])
            self.n_scored = np.concatenate([self.n_scored, np.zeros(pad)])
            self.G_stream = np.concatenate([self.G_stream, np.zeros((pad, 4, len(self.members)))])
            self.F_last = np.concatenate([self.F_last, np.full((pad, len(self.members), 4), np.nan)])

    def _member_rows(self, m: PeriodPredictor, rows: np.ndarray) -> np.ndarray:
        if len(m.table) == len(self.table) and m.table.keys[-1:] == self.table.keys[-1:]:
            return rows  # fed the same batches: same rows
        return m.table.indices([self.table.keys[r] for r in rows], create=False)

    def _update_losses(self) -> None:
        losses = []
        rows = None
        for m in self.members:
            sc = m.last_scores
            if not sc:
                return
            if rows is None:
                rows = sc["rows"]
            elif sc["rows"].shape != rows.shape or not np.array_equal(sc["rows"], rows):
                return
            losses.append(np.column_stack([sc["pin50"], sc["pin95"], sc["pin50_mem"], sc["pin95_mem"]]))
        if rows is None or not losses:
            return
        L = np.stack(losses, axis=2)  # (rows, 4, members): cores for CPU, GiB for memory
        L = np.where(np.isfinite(L), L, np.nanmax(np.where(np.isfinite(L), L, 0.0)))
        self.L_prof = DECAY * self.L_prof + (1 - DECAY) * L.sum(axis=0) if self.L_seen else L.sum(axis=0)
        self.L_seen += 1
        old = self.L_stream[rows]
        first = (self.n_scored[rows] == 0)[:, None, None]
        self.L_stream[rows] = np.where(first, L, DECAY * old + (1 - DECAY) * L)
        self.n_scored[rows] += 1
        self._gradient_step()

    def _gradient_step(self) -> None:
        """Exponentiated gradient on the *combined* forecast's pinball loss (relative units), per output."""
        sc = self.last_scores
        if not sc:
            return
        r = sc["rows"]
        F = self.F_last[r]  # (rows, members, 4)
        if not np.isfinite(F).all():
            keep = np.isfinite(F).all(axis=(1, 2))
            r, F = r[keep], F[keep]
            sc = {k: (v[keep] if isinstance(v, np.ndarray) and v.shape[:1] == keep.shape else v) for k, v in sc.items()}
        if r.size == 0:
            return
        w = self.weights(r)  # (rows, 4, members)
        taus = np.array([0.5, 0.95, 0.5, 0.95])
        y = np.column_stack([sc["y_cpu"], sc["y_cpu"], sc["y_mem"], sc["y_mem"]])  # (rows, 4)
        s = np.column_stack([sc["scale_cpu"], sc["scale_cpu"], sc["scale_mem"], sc["scale_mem"]])
        Ft = F.transpose(0, 2, 1)  # (rows, 4, members)
        yhat = (w * Ft).sum(axis=2)
        g = ((y < yhat).astype(float) - taus)[:, :, None] * Ft / s[:, :, None]  # d pinball / d w
        g = np.clip(np.nan_to_num(g), -5.0, 5.0)
        self.G_stream[r] -= self.eg_rate * g
        self.G_prof -= self.eg_rate * g.mean(axis=0)

    def _next(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        self._grow_rows()
        self._update_losses()
        w = self.weights(rows)
        fcs = []
        for m in self.members:
            r = self._member_rows(m, rows)
            f = np.where((r >= 0)[:, None], m.fc[np.maximum(r, 0)], np.nan)
            fcs.append(f)
        F = np.stack(fcs, axis=1)  # (rows, members, 8)
        self.F_last[rows] = F[:, :, [0, 1, 4, 5]]
        ok = np.isfinite(F[:, :, 0])
        out = []
        for j, col in enumerate((0, 1, 4, 5)):  # each output is combined with the weights of its own loss
            ww = np.where(ok, w[:, j, :], 0.0)
            ww = ww / np.maximum(ww.sum(axis=1, keepdims=True), 1e-12)
            out.append((ww * np.nan_to_num(F[:, :, col])).sum(axis=1))
        return out[0], out[2], out[1], out[3]

    def stats(self) -> dict[str, Any]:
        out = super().stats()
        w = np.round(self.weights(), 4)
        out["weights"] = {q: dict(zip(self.member_names, w[j].tolist(), strict=True))
                          for j, q in enumerate(("cpu_p50", "cpu_p95", "mem_p50", "mem_p95"))}
        return out
