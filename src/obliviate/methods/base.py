"""The contract between the engine and an unlearning method.

A method is three small things (the trl pattern):

* a config dataclass (``MethodConfig`` subclass) holding its hyper-parameters, whose
  ``requirements()`` tells the engine which extra data and which reference it needs;
* a pure loss ``loss(model, batch, cfg, ref) -> LossOutput``;
* a ``MethodSpec`` registering both under a name, with the optimiser/stopping defaults of its
  source paper (the engine merges them under the user's config).

Everything else -- batching, pairing, the frozen reference, optimiser, checkpoints, evaluation,
stopping, refinement -- belongs to the engine, so a new method is one short file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from obliviate.config import check_fields

LOSS_REGIONS = ("completion", "all")

if TYPE_CHECKING:  # torch is imported lazily so that `obliviate --help` stays instant
    import torch

    from obliviate.data.encode import Batch

@dataclass
class MethodConfig:
    """Fields every method has. Every field carries its help text and, where it has one, its valid
    range (``metadata``: ``help``, ``min``/``max``/``gt``, ``choices``; ``obliviate methods NAME``
    lists them, ``check`` enforces them)."""

    loss_region: str = field(default="completion", metadata={
        "help": "completion: the loss on the completion tokens only (the papers' equations, t >= t0); all: on every "
                "token of the row, prompt included (what the KUMPR and ICU reference code does: the whole row)",
        "choices": LOSS_REGIONS})

    def check(self) -> None:
        """The declared ranges and choices of every field (``method_args.<name>`` in errors)."""
        check_fields(self, "method_args.")

    def requirements(self) -> Requirements:
        return Requirements()

    def trainable_parameters(self, model: torch.nn.Module) -> list[str] | None:
        """Qualified names of the only parameters to train (the rest stay frozen); None = all
        (RMU trains a few decoder blocks' MLP projections, see ``methods.layers``)."""
        return None

    def initial_state(self) -> dict[str, float]:
        """The method's own state at the start (PDU's dual variable), updated after every optimizer
        step by ``MethodSpec.update_state`` and saved with every checkpoint. Floats only."""
        return {}


@dataclass(frozen=True)
class Requirements:
    """What a method needs beyond the forget set.

    * ``retain``: a retain batch paired with every forget batch (drawn at random, seeded).
    * ``analogous``: the analogous sample of each forget sample, paired by index (ICU's CLE).
    * ``alternates``: per forget sample, alternative completions of its prompt: ``"refusals"``
      (IdkDPO's "I don't know" answers), ``"retain_completions"`` (LLMU's random mismatch) or
      ``"generated"`` (AltPO: sampled from the original model, ``generated_alternates``).
    * ``refusals``: with ``alternates="refusals"``, the file of refusal texts (None: the built-in list).
    * ``alternates_per_sample``: how many alternates each forget sample gets.
    * ``resample_alternates``: draw new alternates every epoch (seeded by epoch).
    * ``reference_model``: the method calls ``ref.logits(batch)`` (a frozen original model).
    * ``cached_logprobs``: parts (``"forget"``, ``"alternate"``) whose per-sequence log-probs
      under the original model the engine computes once, before the first update.
    """

    retain: bool = False
    analogous: bool = False
    alternates: str | None = None
    refusals: str | None = None
    alternates_per_sample: int = 1
    resample_alternates: bool = False
    reference_model: bool = False
    cached_logprobs: tuple[str, ...] = ()


@dataclass
class MethodBatch:
    """One micro-batch as a loss function sees it.

    ``forget`` holds the *active* forget samples of this step (forgotten ones are already
    filtered out) and ``index`` their positions in the forget set. ``analogous`` row i pairs
    with forget row i. ``alternate`` rows belong to forget rows ``alternate_owner``
    (``alternates_per_sample`` rows each, in order); ``alternate_index`` are their positions in
    the engine's alternate list (what cached log-probs are keyed by).
    """

    forget: Batch
    index: torch.Tensor
    retain: Batch | None = None
    analogous: Batch | None = None
    alternate: Batch | None = None
    alternate_owner: torch.Tensor | None = None
    alternate_index: torch.Tensor | None = None
    state: Mapping[str, float] = field(default_factory=dict)  # the method's state (read-only here)


class Reference(Protocol):
    """The original model, as far as a loss may use it (never trained, never differentiated).

    Implementations (``obliviate.engine.reference``): ``FrozenReference``, a frozen copy (or the
    cached log-probs alone); ``AdapterReference``, a LoRA model with its adapter disabled.
    """

    def logits(self, batch: Batch) -> torch.Tensor:
        """Logits of the original model on ``batch`` ([B, T, V], no grad)."""
        ...

    def sequence_logprob(self, part: str, index: torch.Tensor) -> torch.Tensor:
        """Cached sum of label-token log-probs of ``part`` rows ``index`` ([B], float32)."""
        ...

    def apply(self, fn: Callable[[torch.nn.Module], Any]) -> Any:
        """``fn(original model)`` without gradients (RMU reads its hidden states this way)."""
        ...


@dataclass
class LossOutput:
    loss: torch.Tensor
    logs: dict[str, float] = field(default_factory=dict)


LossFn = Callable[[Any, MethodBatch, Any, Reference], LossOutput]
# After every optimizer step: (config, state, stats, epoch) -> the new state. ``stats`` are the
# step's loss logs averaged over its micro-batches and processes (every process gets the same).
UpdateStateFn = Callable[[Any, Mapping[str, float], Mapping[str, float], int], dict[str, float]]


@dataclass(frozen=True)
class MethodSpec:
    """A registered method. ``defaults`` are nested overrides of the run config
    (``{"train": {...}, "stop": {...}, "refinement": {...}}``) taken from the method's paper."""

    name: str
    config: type[MethodConfig]
    loss: LossFn
    summary: str
    defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    # Set for methods with state of their own (``MethodConfig.initial_state``): PDU's dual ascent.
    update_state: UpdateStateFn | None = None
