"""A small LSTM per application profile (torch, CPU, imported lazily), shared by the profile's instances.

Why it exists: the river model sees a fixed set of hand-made features; the LSTM reads the last ``window``
periods of each stream as a sequence and can learn shapes (ramps, daily waves, recovery after bursts)
that lags miss. It is small on purpose: one layer, 32 hidden units.

* **What it predicts**: the 50 % and 95 % quantiles of the next period's CPU and memory demand, as
  corrections to an anchor (CPU: the closed period's tail, the freshest reading; memory: the last peak)
  divided by the stream's scale. The output layer starts at zero, so an untrained LSTM forecasts the
  anchor (persistence), never garbage. Loss: pinball, weighted by the stream's scale (an error in cores
  costs in proportion to cores).
* **Online, bounded**: each close adds at most ``learn_budget`` (window, target) pairs to a bounded
  replay buffer; each tick with closes runs ``steps`` mini-batches of ``batch`` from the buffer. Work per
  tick is bounded whatever the fleet size.
* **Batched inference**: one forward pass for all streams whose period closed.
* **Deterministic**: torch is seeded and single-threaded, sampling uses the predictor's seeded numpy
  generator, and ``dumps`` carries the weights, optimiser state and buffer, so a restored model predicts
  and keeps learning exactly like the original.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from numpy.typing import NDArray

from sculpt.forecast.engine import PeriodPredictor
from sculpt.forecast.features import calendar

SEQ_FEATURES = 11  # c, m, slot_last, tail, slot_max, present, hod sin/cos, dow sin/cos, weekend
QUANTILES = (0.5, 0.95, 0.5, 0.95)  # cpu p50, cpu p95, mem p50, mem p95
CLIP = 20.0


def _net(hidden: int) -> Any:
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(SEQ_FEATURES, hidden, batch_first=True)
            self.head = nn.Linear(hidden + SEQ_FEATURES, len(QUANTILES))
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out, _ = self.lstm(x)
            return self.head(torch.cat([out[:, -1, :], x[:, -1, :]], dim=1))  # type: ignore[no-any-return]

    return Net()


class ProfileLSTM(PeriodPredictor):
    """One LSTM for the profile; per-stream scale/anchor; replay-buffer training with bounded work per tick."""

    name = "lstm"

    def __init__(self, *, window: int = 24, hidden: int = 32, batch: int = 64, steps: int = 2,
                 buffer: int = 16384, learn_budget: int = 256, lr: float = 3e-3, **kw: Any) -> None:
        super().__init__(**kw)
        import torch

        torch.set_num_threads(1)
        self.window, self.hidden, self.batch, self.steps = window, hidden, batch, steps
        self.learn_budget = learn_budget
        self.lr = lr
        gen_state = torch.random.get_rng_state()
        torch.manual_seed(self.seed)
        self.net = _net(hidden)
        torch.random.set_rng_state(gen_state)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=lr)
        self.buf_x = np.zeros((buffer, window, SEQ_FEATURES), dtype=np.float32)
        self.buf_y = np.zeros((buffer, len(QUANTILES)), dtype=np.float32)
        self.buf_w = np.zeros(buffer, dtype=np.float32)
        self.buf_n = 0
        self.buf_pos = 0
        self.A_last = np.full((0, 2), np.nan)
        self.S_last = np.full((0, 2), np.nan)
        self.trained_steps = 0

    # -- sequences ---------------------------------------------------------------------------------------------
    def _seq(self, rows: np.ndarray, offset: int, scale: np.ndarray) -> NDArray[np.float32]:
        """Windows of ``window`` periods ending ``offset`` periods before the newest, chronological order."""
        W = self.window
        n = W + offset
        cpu, mem = self.table.last(rows, n)
        sl = self.table.gather("slotlast", rows, n)
        tail = self.table.gather("tail", rows, n)
        smax = self.table.gather("slotmax", rows, n)
        pid = self.table.gather("pid", rows, n)
        sl_c = scale[:, 0][:, None]
        cols = [cpu / sl_c, mem / scale[:, 1][:, None], sl / sl_c, tail / sl_c, smax / sl_c]
        x = np.stack(cols, axis=2)[:, offset:, :]  # (r, W, 5) newest first
        present = np.isfinite(x[:, :, 0])
        cal = calendar((pid[:, offset:].astype(np.float64) + 1) * self.table.period_s).reshape(len(rows), W, 5)
        x = np.concatenate([np.nan_to_num(x, nan=0.0), present[:, :, None].astype(np.float64), cal], axis=2)
        seq: NDArray[np.float32] = np.clip(x[:, ::-1, :], -CLIP, CLIP).astype(np.float32)
        return seq

    def _anchor(self, rows: np.ndarray) -> np.ndarray:
        cpu, mem = self.table.last(rows, 1)
        tail = self.table.gather("tail", rows, 1)[:, 0]
        return np.column_stack([np.where(np.isfinite(tail), tail, cpu[:, 0]), mem[:, 0]])

    def _rows_grow(self) -> None:
        n = len(self.table)
        if self.A_last.shape[0] < n:
            pad = max(n, 2 * self.A_last.shape[0], 16) - self.A_last.shape[0]
            self.A_last = np.vstack([self.A_last, np.full((pad, 2), np.nan)])
            self.S_last = np.vstack([self.S_last, np.full((pad, 2), np.nan)])

    # -- learning ----------------------------------------------------------------------------------------------
    def _add(self, rows: np.ndarray) -> None:
        have = np.isfinite(self.A_last[rows, 0]) & (self.table.n_periods[rows] >= 2)
        rows = rows[have]
        if rows.size > self.learn_budget:
            rows = np.sort(self.rng.choice(rows, self.learn_budget, replace=False))
        if rows.size == 0:
            return
        s = self.S_last[rows]
        a = self.A_last[rows]
        x = self._seq(rows, 1, s)
        cpu, mem = self.table.last(rows, 1)
        yc = np.clip((cpu[:, 0] - a[:, 0]) / s[:, 0], -CLIP, CLIP)
        ym = np.clip((mem[:, 0] - a[:, 1]) / s[:, 1], -CLIP, CLIP)
        y = np.column_stack([yc, yc, ym, ym])
        ok = np.isfinite(y).all(axis=1)
        x, y, w = x[ok], y[ok], np.clip(s[ok, 0] / max(float(np.mean(s[ok, 0])), 1e-9), 0.05, 20.0) if ok.any() else s[ok, 0]
        k = x.shape[0]
        at = (self.buf_pos + np.arange(k)) % self.buf_x.shape[0]
        self.buf_x[at], self.buf_y[at], self.buf_w[at] = x, y, w
        self.buf_pos = int((self.buf_pos + k) % self.buf_x.shape[0])
        self.buf_n = int(min(self.buf_n + k, self.buf_x.shape[0]))

    def _train(self) -> None:
        if self.buf_n < self.batch:
            return
        import torch

        q = torch.tensor(QUANTILES, dtype=torch.float32)
        self.net.train()
        for _ in range(self.steps):
            pick = self.rng.integers(0, self.buf_n, self.batch)
            x = torch.from_numpy(self.buf_x[pick])
            y = torch.from_numpy(self.buf_y[pick])
            w = torch.from_numpy(self.buf_w[pick])
            d = y - self.net(x)
            loss = ((torch.maximum(q * d, (q - 1) * d)).sum(dim=1) * w).mean()
            self.opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]  # torch leaves Tensor.backward unannotated
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
            self.opt.step()
            self.trained_steps += 1

    def _predict(self, x: np.ndarray) -> np.ndarray:
        import torch

        self.net.eval()
        with torch.no_grad():
            return self.net(torch.from_numpy(x)).numpy().astype(np.float64)  # type: ignore[no-any-return]

    def _next(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        self._rows_grow()
        self._add(rows)
        self._train()
        s = self.scale[rows]
        a = self._anchor(rows)
        out = self._predict(self._seq(rows, 0, s))
        self.A_last[rows], self.S_last[rows] = a, s
        med_c = a[:, 0] + s[:, 0] * out[:, 0]
        up_c = a[:, 0] + s[:, 0] * np.maximum(out[:, 1], out[:, 0])
        med_m = a[:, 1] + s[:, 1] * out[:, 2]
        up_m = a[:, 1] + s[:, 1] * np.maximum(out[:, 3], out[:, 2])
        return med_c, med_m, up_c, up_m

    # -- persistence ---------------------------------------------------------------------------------------------
    def _model_state(self) -> dict[str, Any]:
        import torch

        f = io.BytesIO()
        torch.save({"net": self.net.state_dict(), "opt": self.opt.state_dict()}, f)
        n = self.buf_n
        return {"torch": f.getvalue(), "buf_x": self.buf_x[:n].copy() if n < self.buf_x.shape[0] else self.buf_x.copy(),
                "buf_y": self.buf_y.copy(), "buf_w": self.buf_w.copy(), "buf_n": self.buf_n, "buf_pos": self.buf_pos,
                "A_last": self.A_last.copy(), "S_last": self.S_last.copy(), "trained_steps": self.trained_steps,
                "cfg": (self.window, self.hidden, self.batch, self.steps, self.learn_budget, self.lr)}

    def _load_model_state(self, st: dict[str, Any]) -> None:
        import torch

        self.window, self.hidden, self.batch, self.steps, self.learn_budget, self.lr = st["cfg"]
        self.net = _net(self.hidden)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=self.lr)
        blob = torch.load(io.BytesIO(st["torch"]), weights_only=True)
        self.net.load_state_dict(blob["net"])
        self.opt.load_state_dict(blob["opt"])
        size = st["buf_y"].shape[0]
        self.buf_x = np.zeros((size, self.window, SEQ_FEATURES), dtype=np.float32)
        self.buf_x[: st["buf_x"].shape[0]] = st["buf_x"]
        self.buf_y, self.buf_w = st["buf_y"], st["buf_w"]
        self.buf_n, self.buf_pos = st["buf_n"], st["buf_pos"]
        self.A_last, self.S_last, self.trained_steps = st["A_last"], st["S_last"], st["trained_steps"]
