"""The training engine every unlearning method shares (see ``loop.py`` for the walk-through)."""

from obliviate.engine.config import EvalConfig, StopConfig, TrainConfig
from obliviate.engine.data import UnlearnData, mismatch_alternates, refusal_alternates
from obliviate.engine.loop import Callback, Engine, EngineResult

__all__ = ["Callback", "Engine", "EngineResult", "EvalConfig", "StopConfig", "TrainConfig", "UnlearnData",
           "mismatch_alternates", "refusal_alternates"]
