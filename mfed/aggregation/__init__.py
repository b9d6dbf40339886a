"""Aggregation: one strategy per file (the route of a round's fold), the fold's stages, pure functions."""

from mfed.aggregation.base import Strategy
from mfed.aggregation.centralised import Centralised
from mfed.aggregation.ditto import Ditto
from mfed.aggregation.fedamp import FedAMP
from mfed.aggregation.fedavg import FedAvgPerTask
from mfed.aggregation.fedavg_all import FedAvgAll
from mfed.aggregation.feddea import FedDEA
from mfed.aggregation.fedhca2 import FedHCA2
from mfed.aggregation.fedprox import FedProx
from mfed.aggregation.fedrep import FedRep
from mfed.aggregation.fold import Fold, Pipeline, aggregate
from mfed.aggregation.local import Local
from mfed.aggregation.matfl import MaTFL
from mfed.aggregation.mfed import MFed
from mfed.aggregation.mfed_ca import MFedCA

__all__ = [
    "Centralised", "Ditto", "FedAMP", "FedAvgAll", "FedAvgPerTask", "FedDEA", "FedHCA2", "FedProx", "FedRep", "Fold",
    "Local", "MaTFL", "MFed", "MFedCA", "Pipeline", "Strategy", "aggregate",
]  # fmt: skip
