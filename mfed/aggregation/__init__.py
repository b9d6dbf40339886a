"""Aggregation: pure averaging functions and one strategy per file."""

from mfed.aggregation.base import Strategy
from mfed.aggregation.fedavg import FedAvgPerTask
from mfed.aggregation.local import Local
from mfed.aggregation.mfed import MFed

__all__ = ["FedAvgPerTask", "Local", "MFed", "Strategy"]
