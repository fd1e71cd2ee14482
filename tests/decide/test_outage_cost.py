"""A move that leaves the service down costs its outage at the SLO penalty rate (``CostModel.outage_s``)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from sculpt.decide.cost import DEFAULT_COST, VOLUME_OUTAGE_S, cost_model_for
from sculpt.decide.decision import net_gain
from sculpt.domain.spec import parse_spec


def _spec(engine: str, provider: str, strategy: str) -> object:
    shape, region = {"local": ("std-1c-1024m", "local-a"), "aws": ("m6i.large", "us-east-1")}[provider]
    return parse_spec({"fleet": "web", "engine": engine, "provider": provider, "shape": shape, "region": region,
                       "app": {"state_sync": {"strategy": strategy}}})


def test_only_a_cloud_volume_hand_over_is_an_outage() -> None:
    assert cost_model_for(_spec("pulumi", "aws", "volume")).outage_s == VOLUME_OUTAGE_S  # type: ignore[arg-type]
    assert cost_model_for(_spec("pulumi", "aws", "none")).outage_s == 0  # type: ignore[arg-type]
    assert cost_model_for(_spec("local", "local", "volume")).outage_s == 0  # type: ignore[arg-type]  # LB pause


def test_the_outage_is_charged_per_stream_at_its_slo_penalty_rate() -> None:
    price = np.array([0.1, 0.2])
    p_breach = np.array([[0.5, 0.0], [0.0, 0.0]])
    current, conf = np.array([0, 1]), np.array([1.0, 1.0])
    penalty = np.array([3.0, 0.5])  # $/h a breach of each stream costs
    _, _, base = net_gain(price, p_breach, current, conf, DEFAULT_COST, penalty=penalty)
    _, _, out = net_gain(price, p_breach, current, conf, replace(DEFAULT_COST, outage_s=1800.0), penalty=penalty)
    np.testing.assert_allclose(out - base, [[1.5, 1.5], [0.25, 0.25]])  # half an hour down, at each rate
