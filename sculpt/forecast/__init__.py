"""Demand forecasting: one ``Predictor`` protocol, river and LSTM models, an ensemble, the shape distribution."""

from sculpt.forecast.base import ForecastBatch, Predictor, Sample, SampleBatch

__all__ = ["ForecastBatch", "Predictor", "Sample", "SampleBatch"]
