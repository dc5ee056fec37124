"""One engine, one process or many: how work and files are split under ``accelerate launch``.

The engine runs unchanged on one device, under DDP, DeepSpeed ZeRO-1/2/3 and FSDP2. The rules:

* **Training data**: the forget set's seeded order (seed, epoch) is cut into micro-batches that
  are dealt round-robin to the processes (``deal_batches``), so each process trains on
  different forget samples, and each draws its own retain samples (seeded by rank). The
  ICU/open-unlearning reference codes give every rank the same batches.
* **Lockstep**: DDP, ZeRO-3 and FSDP communicate inside forward and backward, so every process
  must run the same passes in the same order. A process whose micro-batch is empty (the set
  did not divide evenly, or refinement dropped its samples) runs the method on a placeholder
  batch with weight 0 -- unless *no* process has data, then all skip it together (no
  optimizer step on a batch of forgotten samples, as on one process).
* **Evaluation**: with replicated weights (one process, DDP, ZeRO-1/2) each process scores
  every world-th sample and the results are gathered back in order. With sharded weights
  (ZeRO-3, FSDP) every forward gathers parameters collectively, so all processes evaluate all
  samples in lockstep and rank 0's results are broadcast. Either way every process ends the
  epoch with identical metrics and refinement decisions (checked: ``check_agreement``).
* **Files**: only the main process writes (run folder, checkpoints' engine state);
  accelerate's ``save_state`` writes its own per-rank shards.

accelerate assumes GPUs for multi-process launches; ``accelerator_kwargs`` makes the same
launch commands work on a CPU-only machine (DDP and DeepSpeed over gloo), which is how the
multi-process tests run.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import torch

from obliviate.errors import ObliviateError

T = TypeVar("T")


def _flag(name: str) -> bool:
    return os.environ.get(name, "false").lower() in ("1", "true", "yes")


def _has_accelerator() -> bool:
    probe = getattr(torch, "accelerator", None)  # torch >= 2.6: cuda, xpu, hpu, mps, ...
    if probe is not None and hasattr(probe, "is_available"):
        return bool(probe.is_available())
    return torch.cuda.is_available()


def accelerator_kwargs() -> dict[str, Any]:
    """Extra arguments for ``Accelerator``/``PartialState`` on a CPU-only multi-process launch.

    ``accelerate launch --multi_gpu`` (or a DeepSpeed config) starts torchrun workers that
    accelerate would treat as single processes when no GPU is present. DDP then needs
    ``cpu=True`` (gloo, accelerate's MULTI_CPU) and DeepSpeed an explicit gloo backend.
    accelerate has no FSDP on CPU, so that is refused instead of silently running DDP.
    """
    launched = os.environ.get("LOCAL_RANK") is not None and int(os.environ.get("WORLD_SIZE", "1")) > 1
    if not launched or _has_accelerator() or _flag("ACCELERATE_USE_CPU"):
        return {}
    if _flag("ACCELERATE_USE_FSDP"):
        raise ObliviateError("FSDP needs GPUs (accelerate runs FSDP on CUDA/XPU/NPU devices only); on CPU use "
                             "the ddp or zero2/zero3 accelerate config")
    if _flag("ACCELERATE_USE_DEEPSPEED"):
        return {"backend": "gloo"}
    return {"cpu": True}


def partial_state():
    """accelerate's process state (initialises the process group under ``accelerate launch``)."""
    from accelerate.state import PartialState

    return PartialState(**accelerator_kwargs())


def is_main_process() -> bool:
    return partial_state().is_main_process


def on_main(fn: Callable[[], T]) -> T:
    """Run ``fn`` on the main process only and give every process its result (or its error).

    Used for work whose result must be identical everywhere and whose side effects (files)
    must happen once: preparing the run folder, choosing analogous samples.
    """
    state = partial_state()
    if state.num_processes == 1:
        return fn()
    from accelerate.utils import broadcast_object_list

    box: list[Any] = [None]
    if state.is_main_process:
        try:
            box[0] = ("ok", fn())
        except ObliviateError as e:  # every process must fail the same way, or the others hang
            box[0] = ("error", str(e))
    broadcast_object_list(box, from_process=0)
    kind, value = box[0]
    if kind == "error":
        raise ObliviateError(value)
    return value


def deal_batches(order: Sequence[int], micro: int, world: int, rank: int) -> list[list[int]]:
    """This process's micro-batch for each round of an epoch.

    ``order`` is cut into micro-batches of ``micro`` consecutive samples; round k gives
    micro-batch k * world + r to process r. Every process gets the same number of rounds; a
    process whose micro-batch does not exist gets ``[]`` (no sample is repeated to pad, unlike
    a DistributedSampler, so no forget sample is unlearned twice per epoch).
    """
    batches = [list(order[s:s + micro]) for s in range(0, len(order), micro)]
    rounds = -(-len(batches) // world)
    return [batches[k * world + rank] if k * world + rank < len(batches) else [] for k in range(rounds)]


def is_sharded(acc) -> bool:
    """Are the weights split across processes (ZeRO-3, FSDP), so that every forward is collective?"""
    from accelerate.utils import DistributedType

    if acc.distributed_type == DistributedType.FSDP:
        return True
    if acc.distributed_type == DistributedType.DEEPSPEED:
        return acc.state.deepspeed_plugin.zero_stage == 3
    return False


def count_ranks(acc, flag: bool) -> int:
    """How many processes have ``flag`` set (one all-reduce; no communication on one process)."""
    if acc.num_processes == 1:
        return int(flag)
    return int(acc.reduce(torch.tensor([float(flag)], device=acc.device), "sum").item())


def gather_in_order(acc, fn: Callable[[list], list], items: Sequence, sharded: bool) -> list:
    """``fn(items)`` (a list aligned with ``items``) computed by all processes together."""
    if acc.num_processes == 1:
        return fn(list(items))
    from accelerate.utils import broadcast_object_list, gather_object

    if sharded:  # lockstep: everyone runs everything; rank 0's values are the run's values
        box = [fn(list(items))]
        broadcast_object_list(box, from_process=0)
        return box[0]
    rank, world = acc.process_index, acc.num_processes
    gathered = gather_object([fn(list(items[rank::world]))])
    out: list = [None] * len(items)
    for r, part in enumerate(gathered):
        out[r::world] = part
    return out


def gather_objects(acc, obj: Any) -> list[Any]:
    """Every process's ``obj``, in rank order (on every process)."""
    if acc.num_processes == 1:
        return [obj]
    from accelerate.utils import gather_object

    return gather_object([obj])


def fingerprint(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=repr).encode()).hexdigest()


def check_agreement(acc, obj: Any, what: str) -> None:
    """Raise if the processes hold different ``obj`` (they must make identical decisions)."""
    if acc.num_processes == 1:
        return
    prints = gather_objects(acc, fingerprint(obj))
    if len(set(prints)) != 1:
        raise ObliviateError(f"processes disagree on {what} (fingerprints {prints}); the run would diverge")


def weights_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of every tensor (sorted by name).

    The summary stores it for the saved model, so anyone can check that ``model/`` holds the
    weights the run reports (``weights_sha256(AutoModelForCausalLM.from_pretrained(...).state_dict())``).
    """
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def accelerate_configs() -> dict[str, tuple[str, str]]:
    """The shipped ``accelerate launch`` configs: name -> (path, first comment line)."""
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "configs" / "accelerate"
    out = {}
    for path in sorted(folder.glob("*.yaml")):
        first = path.read_text().splitlines()[0].removeprefix("#").strip().removeprefix("obliviate:").strip()
        out[path.stem] = (str(path), first)
    return out


@contextmanager
def ordinary_modules(acc) -> Iterator[None]:
    """Models built inside are ordinary, unpartitioned modules, even under ZeRO-3.

    Under ZeRO-3 accelerate registers its DeepSpeed config with transformers, which then builds
    every ``from_pretrained``/``from_config`` model inside ``deepspeed.zero.Init``: partitioned
    weights that no DeepSpeed engine manages ("'weight' must be 2-D"), and collective calls that
    hang when only the main process builds a model (the final model rebuilt for saving).
    """
    if acc is None or acc.state.deepspeed_plugin is None or not is_sharded(acc):
        yield
        return
    from transformers.integrations import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()
    try:
        yield
    finally:
        acc.state.deepspeed_plugin.set_deepspeed_weakref()


@contextmanager
def evaluation_context(acc, model: torch.nn.Module) -> Iterator[None]:
    """What evaluating a sharded (ZeRO-3 / FSDP) model in the middle of training needs.

    * Models loaded inside (BERTScore's backbone, a callback's judge) load as ordinary modules
      (``ordinary_modules``).
    * The metrics run under ``torch.inference_mode``; parameters gathered there and kept gathered
      (DeepSpeed's persistent small parameters) become inference tensors that the next training
      forward cannot save for backward. Afterwards they are replaced by ordinary copies.
    """
    if acc is None or not is_sharded(acc):
        yield
        return
    try:
        with ordinary_modules(acc):
            yield
    finally:
        for param in model.parameters():
            if param.data.is_inference():
                param.data = param.data.clone()
