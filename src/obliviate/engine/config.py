"""The engine's typed options (YAML sections ``train``, ``stop``, ``eval``, ``refinement``; the
refinement rule itself lives in ``obliviate.engine.refinement``). Method defaults from the
papers are merged on top of these, then the user's YAML, then ``key=value`` overrides (see
``obliviate.unlearn``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from obliviate.engine.tracking import parse_report_to
from obliviate.errors import ObliviateError

LORA_SAVE_MODES = ("merged", "adapter")


@dataclass
class LoraOptions:
    """``train.lora``: train low-rank adapters (peft) instead of the full weights.

    The original model is then the same weights with the adapter switched off, so methods
    with a KL term need no second copy of the model (``obliviate.engine.lora``).
    """

    enabled: bool = field(default=False, metadata={"help": "train LoRA adapters instead of the full weights"})
    r: int = field(default=16, metadata={"help": "adapter rank"})
    alpha: float = field(default=32.0, metadata={"help": "scaling = alpha / r"})
    dropout: float = field(default=0.0, metadata={
        "help": "dropout on the adapter's input (active while training when > 0)"})
    target_modules: str = field(default="all-linear", metadata={
        "help": "\"all-linear\": every linear layer but the output head (the QLoRA recipe); \"auto\": "
                "peft's per-architecture default (e.g. q_proj,v_proj for Llama); or comma-separated module "
                "names."})
    save: str = field(default="merged", metadata={
        "help": "\"merged\": an ordinary HF folder in model/ | \"adapter\": the peft adapter folder"})

    def check(self) -> None:
        if self.save not in LORA_SAVE_MODES:
            raise ObliviateError(f"train.lora.save must be 'merged' or 'adapter', got {self.save!r}")
        if self.r < 1 or self.alpha <= 0 or not 0.0 <= self.dropout < 1.0:
            raise ObliviateError("train.lora needs r >= 1, alpha > 0 and 0 <= dropout < 1")
        if not self.target_modules.strip():
            raise ObliviateError("train.lora.target_modules is empty; use all-linear, auto or module names")


@dataclass
class TrainConfig:
    optimizer: str = field(default="adamw", metadata={"help": "\"adam\" | \"adamw\""})
    lr: float = field(default=1e-5, metadata={"help": "learning rate"})
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999], metadata={"help": "Adam(W) betas"})
    eps: float = field(default=1e-8, metadata={"help": "Adam(W) epsilon"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    scheduler: str = field(default="constant", metadata={
        "help": "\"constant\" | \"linear\" (decay to 0 over max_epochs)"})
    warmup_epochs: float = field(default=0.0, metadata={"help": "linear warm-up, in epochs (TOFU: 1)"})
    batch_size: int = field(default=8, metadata={
        "help": "forget samples per forward pass and process; 0 = the whole forget set in one step"})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "micro-batches accumulated per optimizer step"})
    max_grad_norm: float | None = field(default=None, metadata={
        "help": "clip gradients to this norm (None: no clipping, as the references)"})
    mixed_precision: str = field(default="no", metadata={
        "help": "\"no\" | \"bf16\" | \"fp16\" (accelerate autocast)"})
    reference_dtype: str = field(default="float32", metadata={
        "help": "dtype of the frozen reference copy (\"bfloat16\" halves its memory)"})
    seed: int = field(default=42, metadata={"help": "seed of every sampler and draw (resume replays it)"})
    max_length: int | None = field(default=None, metadata={
        "help": "truncate completions so that rows have at most this many tokens"})
    dropout: bool = field(default=False, metadata={
        "help": "keep dropout on while unlearning (the references load models with dropout 0)"})
    gradient_checkpointing: bool = field(default=False, metadata={
        "help": "recompute activations in backward: less memory, ~1/3 more compute"})
    lora: LoraOptions = field(default_factory=LoraOptions, metadata={"help": "train low-rank adapters instead of the full weights (peft)"})
    record_samples: bool = field(default=False, metadata={
        "help": "Write samples.jsonl to the run folder: which forget/retain/analogous ids each process "
                "trained on in each micro-batch (an audit trail; also how the multi-process test checks "
                "sharding)."})
    report_to: str = field(default="none", metadata={
        "help": "Experiment trackers through accelerate: tensorboard, wandb, mlflow (comma-separated) or "
                "none (obliviate.engine.tracking; each is an optional extra, e.g. pip install "
                "'obliviate[tensorboard]')."})

    def check(self) -> None:
        if self.optimizer not in ("adam", "adamw"):
            raise ObliviateError(f"train.optimizer must be 'adam' or 'adamw', got {self.optimizer!r}")
        if self.scheduler not in ("constant", "linear"):
            raise ObliviateError(f"train.scheduler must be 'constant' or 'linear', got {self.scheduler!r}")
        if self.mixed_precision in ("False", "false"):  # YAML 1.1 reads `train.mixed_precision=no` as false
            self.mixed_precision = "no"
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ObliviateError(f"train.mixed_precision must be no, bf16 or fp16, got {self.mixed_precision!r}")
        if self.batch_size < 0 or self.gradient_accumulation_steps < 1:
            raise ObliviateError("train.batch_size must be >= 0 and train.gradient_accumulation_steps >= 1")
        if len(self.betas) != 2:
            raise ObliviateError(f"train.betas must have two values, got {list(self.betas)}")
        if self.lr <= 0:
            raise ObliviateError(f"train.lr must be positive, got {self.lr}")
        self.lora.check()
        parse_report_to(self.report_to)  # unknown or not installed: a clear error before any work


STOP_RULES = ("thresholds", "indistinguishable")
TARGET_STATISTICS = ("auto", "loss", "mink", "minkpp", "truth_ratio")


@dataclass
class TargetConfig:
    """``stop.target``: the indistinguishability target (``obliviate.engine.target``). Each
    evaluation scores the forget set and the held-out data (``data.heldout``, never trained on, of
    the same kind) under the current model and compares the two samples: MIA AUC and a KS test."""

    statistic: str = field(default="auto", metadata={
        "help": "per-sample statistic: auto (truth_ratio for QA with paraphrased + perturbed answers, else "
                "loss) | loss | mink | minkpp | truth_ratio"})
    k: float = field(default=0.2, metadata={"help": "fraction of lowest tokens for mink / minkpp"})
    auc_band: float = field(default=0.1, metadata={"help": "indistinguishable when |AUC - 0.5| <= auc_band ..."})
    ks_alpha: float = field(default=0.05, metadata={"help": "... and the KS p-value >= ks_alpha"})
    overshoot: float = field(default=0.1, metadata={
        "help": "over-unlearned: AUC < 0.5 - overshoot (the forget set looks *less* seen than never-seen data)"})
    per_sample: bool = field(default=False, metadata={
        "help": "stop unlearning samples that already score like held-out data (recomputed each epoch)"})
    quantile: float = field(default=0.5, metadata={
        "help": "per sample: held-out-like = no more member-like than this quantile of held-out scores"})
    before_training: bool = field(default=True, metadata={
        "help": "also check the original model: a forget set that already looks never-seen is not touched"})
    max_heldout: int | None = field(default=None, metadata={
        "help": "use at most this many held-out records (speed)"})
    batch_size: int = field(default=32, metadata={"help": "sequences per forward pass"})

    def check(self) -> None:
        if self.statistic not in TARGET_STATISTICS:
            raise ObliviateError(f"stop.target.statistic must be one of {', '.join(TARGET_STATISTICS)}, "
                                 f"got {self.statistic!r}")
        if not 0 < self.k <= 1:
            raise ObliviateError(f"stop.target.k must be in (0, 1], got {self.k}")
        if not 0 <= self.auc_band < 0.5 or not 0 <= self.overshoot < 0.5:
            raise ObliviateError("stop.target.auc_band and stop.target.overshoot must be in [0, 0.5)")
        if not 0 <= self.ks_alpha < 1:
            raise ObliviateError(f"stop.target.ks_alpha must be in [0, 1), got {self.ks_alpha}")
        if not 0 < self.quantile < 1:
            raise ObliviateError(f"stop.target.quantile must be in (0, 1), got {self.quantile}")


@dataclass
class StopConfig:
    """When to stop. Checked after every epoch, from ``min_epochs`` on (the references always
    train at least one epoch). Thresholds are strict (<) on means over the forget set."""

    el_threshold: float | None = field(default=0.0499, metadata={
        "help": "mean EL_n below this ... (ICU V-D, KUMPR 125M)"})
    ma_threshold: float | None = field(default=0.5994, metadata={
        "help": "... and mean MA below this (ICU V-D; KUMPR 125M: 0.2994)"})
    require: str = field(default="all", metadata={
        "help": "\"all\": every set threshold must hold (KUMPR, ICU) | \"any\": one suffices"})
    average_over: str = field(default="all", metadata={
        "help": "means over \"all\" forget samples (references) or only the \"active\" ones"})
    calibrate_on: str | None = field(default=None, metadata={
        "help": "data spec of held-out text: thresholds = the original model's means on it"})
    max_epochs: int = field(default=20, metadata={"help": "stop after this many epochs"})
    min_epochs: int = field(default=1, metadata={"help": "never stop before this many epochs (the references train at least one)"})
    when_all_forgotten: bool = field(default=True, metadata={
        "help": "stop when refinement has no active sample left"})
    rule: str = field(default="thresholds", metadata={
        "help": "\"thresholds\": the MA/EL thresholds above (KUMPR, ICU) | \"indistinguishable\": stop when "
                "the forget set scores like held-out data (data.heldout), or report over-unlearning "
                "(stop.target)"})
    target: TargetConfig = field(default_factory=TargetConfig, metadata={"help": "the indistinguishability target (forget vs held-out) and its rule"})

    def check(self) -> None:
        if self.rule not in STOP_RULES:
            raise ObliviateError(f"stop.rule must be one of {', '.join(STOP_RULES)}, got {self.rule!r}")
        self.target.check()
        if self.require not in ("all", "any"):
            raise ObliviateError(f"stop.require must be 'all' or 'any', got {self.require!r}")
        if self.average_over not in ("all", "active"):
            raise ObliviateError(f"stop.average_over must be 'all' or 'active', got {self.average_over!r}")
        if self.max_epochs < 1 or self.min_epochs < 1:
            raise ObliviateError("stop.max_epochs and stop.min_epochs must be >= 1")


@dataclass
class EvalConfig:
    """What is measured before training and after every epoch."""

    el_n: int = field(default=10, metadata={"help": "n of EL_n (the n-gram size of the extraction likelihood)"})
    el: bool = field(default=True, metadata={
        "help": "EL_n every epoch costs one batched greedy decode per divergence point: minutes per epoch "
                "on a 100M+ model on CPU. False measures MA only (then the EL stop threshold must be null)."})
    ma_region: str = field(default="completion", metadata={
        "help": "\"completion\" | \"all\" (ICU/KUMPR code: the whole row)"})
    el_region: str = field(default="completion", metadata={
        "help": "\"completion\" (ICU's EL) | \"all\" (KUMPR's)"})
    retain: bool = field(default=True, metadata={
        "help": "retain perplexity every epoch (when a retain set is given)"})
    max_retain_samples: int = field(default=256, metadata={
        "help": "evaluate on the first N retain samples (speed)"})
    batch_size: int = field(default=32, metadata={"help": "examples per forward pass of the evaluation"})
    el_batch_size: int = field(default=64, metadata={"help": "continuations decoded together by EL_n"})

    def check(self) -> None:
        for name in ("ma_region", "el_region"):
            if getattr(self, name) not in ("completion", "all"):
                raise ObliviateError(f"eval.{name} must be 'completion' or 'all', got {getattr(self, name)!r}")
        if self.el_n < 1:
            raise ObliviateError("eval.el_n must be >= 1")


RULES = ("paper", "reference")


@dataclass
class RefinementConfig:
    enabled: bool = field(default=False, metadata={"help": "drop samples from training once forgotten (ICU's IUR)"})
    rule: str = field(default="reference", metadata={
        "help": "\"reference\" (OR, recomputed every epoch; default, see docs/methods.md) | \"paper\" (AND, "
                "permanent)"})
    bertscore_threshold: float = field(default=0.3, metadata={"help": "a (ICU V-D)"})
    bleu_threshold: float = field(default=0.01, metadata={"help": "b (ICU V-D)"})
    num_beams: int = field(default=2, metadata={"help": "ICU's generation: 2-beam search"})
    max_new_tokens: int | None = field(default=None, metadata={
        "help": "None: as many as each sample's target has (ICU: 50 of 50)"})
    before_training: bool | None = field(default=None, metadata={
        "help": "also check before the first epoch; None: as the rule's source does"})
    bertscore_model: str | None = field(default=None, metadata={
        "help": "local BERTScore backbone; None: all-MiniLM-L6-v2 (metrics default)"})
    batch_size: int = field(default=32, metadata={"help": "continuations generated and scored together"})

    def check(self) -> None:
        if self.rule not in RULES:
            raise ObliviateError(f"refinement.rule must be one of {', '.join(RULES)}, got {self.rule!r}")
        if self.num_beams < 1:
            raise ObliviateError("refinement.num_beams must be >= 1")

    @property
    def checks_before_training(self) -> bool:
        if self.before_training is not None:
            return self.before_training
        return self.rule == "reference"
