"""The training engine every unlearning method shares (see ``loop.py`` for the walk-through)."""

from obliviate.engine.callbacks import Callback, Control, EpochReport, EpochUpdate, RunArgs
from obliviate.engine.config import EvalConfig, StopConfig, TrainConfig
from obliviate.engine.data import UnlearnData, mismatch_alternates, refusal_alternates
from obliviate.engine.loop import Engine, EngineResult

__all__ = ["Callback", "Control", "Engine", "EngineResult", "EpochReport", "EpochUpdate", "EvalConfig", "RunArgs",
           "StopConfig", "TrainConfig", "UnlearnData", "mismatch_alternates", "refusal_alternates"]
