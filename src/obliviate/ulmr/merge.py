"""Model parameter averaging (ULMR §3.3): θ_u = α·θ + (1−α)·θ'.

θ is the original model, θ' the fine-tuned (unlearned) one; α = 1 gives the original back,
α = 0 the fine-tuned model. The averaging is the weight interpolation of Wortsman et al. (2022)
that ULMR cites; it works on any two checkpoints with the same architecture and tensor shapes.

* ``average_state_dicts`` / ``average_into``: in memory (the ULMR method uses these).
* ``merge_checkpoints``: folder to folder. For safetensors checkpoints it streams one tensor at a
  time from both inputs and writes the output shard by shard, so memory stays at about one shard
  instead of two whole models (other formats are loaded whole).

Exactness: α = 1 and α = 0 copy the respective tensor bit for bit; other α are computed in
float32 and cast to the base model's dtype. Non-floating tensors (integer buffers) must be
identical in both checkpoints and are copied.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from obliviate.errors import ObliviateError
from obliviate.runfolder import MARKER, RunFolder

log = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
MERGE_INFO = "merge.json"


def parse_alphas(text: str | float | Iterable[float]) -> list[float]:
    """``"0,0.25,0.5"`` -> [0.0, 0.25, 0.5]; every α must lie in [0, 1]."""
    if isinstance(text, int | float):
        values = [float(text)]
    elif isinstance(text, str):
        try:
            values = [float(t) for t in text.split(",") if t.strip()]
        except ValueError:
            raise ObliviateError(f"--alpha {text!r}: expected numbers separated by commas, e.g. 0,0.5,1") from None
    else:
        values = [float(v) for v in text]
    if not values:
        raise ObliviateError("--alpha: give at least one value")
    bad = [a for a in values if not 0.0 <= a <= 1.0]
    if bad:
        raise ObliviateError(f"--alpha {bad[0]}: α must lie in [0, 1] (1 = the original model, 0 = the tuned one)")
    if len(set(values)) != len(values):
        raise ObliviateError(f"--alpha {text!r}: repeated value")
    return values


def average_tensor(base: torch.Tensor, tuned: torch.Tensor, alpha: float, name: str = "") -> torch.Tensor:
    """α·base + (1−α)·tuned, in the base tensor's dtype (exact copies at α = 1 and α = 0)."""
    if base.shape != tuned.shape:
        raise ObliviateError(f"tensor {name!r}: shape {tuple(base.shape)} in base vs {tuple(tuned.shape)} in tuned")
    if not base.is_floating_point():
        if not torch.equal(base, tuned.to(base.dtype)):
            raise ObliviateError(f"tensor {name!r}: non-floating tensor differs between base and tuned")
        return base.clone()
    if alpha == 1.0:
        return base.clone()
    if alpha == 0.0:
        return tuned.to(base.dtype, copy=True)
    mixed = alpha * base.to(torch.float32) + (1.0 - alpha) * tuned.to(device=base.device, dtype=torch.float32)
    return mixed.to(base.dtype)


def check_compatible(base: Mapping[str, Any], tuned: Mapping[str, Any], *, base_name: str = "base",
                     tuned_name: str = "tuned") -> None:
    """Same tensor names and shapes, or an error naming the first mismatching tensor.

    Values may be tensors or shapes (tuples), so checkpoints can be checked before loading.
    """
    def shape(v: Any) -> tuple[int, ...]:
        return tuple(v.shape) if hasattr(v, "shape") else tuple(v)

    for name in base:
        if name not in tuned:
            raise ObliviateError(f"incompatible checkpoints: tensor {name!r} is in {base_name} but not in {tuned_name}")
        if shape(base[name]) != shape(tuned[name]):
            raise ObliviateError(f"incompatible checkpoints: tensor {name!r} has shape {shape(base[name])} in "
                                 f"{base_name} but {shape(tuned[name])} in {tuned_name}")
    extra = [name for name in tuned if name not in base]
    if extra:
        raise ObliviateError(f"incompatible checkpoints: tensor {extra[0]!r} is in {tuned_name} but not in {base_name}")


def average_state_dicts(base: Mapping[str, torch.Tensor], tuned: Mapping[str, torch.Tensor],
                        alpha: float) -> dict[str, torch.Tensor]:
    """θ_u = α·base + (1−α)·tuned for every tensor (new tensors; inputs untouched)."""
    parse_alphas(alpha)
    check_compatible(base, tuned)
    return {name: average_tensor(base[name], tuned[name], alpha, name) for name in base}


@torch.no_grad()
def average_into(tuned_model: torch.nn.Module, base_state: Mapping[str, torch.Tensor], alpha: float) -> None:
    """Overwrite ``tuned_model``'s weights with α·base + (1−α)·tuned, in place.

    ``base_state`` is the original model's state dict (e.g. a CPU copy taken before training).
    Tied weights are one tensor in the model, so each storage is averaged exactly once.
    """
    parse_alphas(alpha)
    state = tuned_model.state_dict()
    check_compatible(base_state, state, base_name="the original model", tuned_name="the fine-tuned model")
    seen: set[int] = set()
    for name, tensor in state.items():
        key = tensor.data_ptr()
        if key in seen:  # a tied weight already averaged under another name
            continue
        seen.add(key)
        tensor.copy_(average_tensor(base_state[name].to(tensor.device), tensor, alpha, name).to(tensor.dtype))


# --------------------------------------------------------------------------- checkpoints on disk

def _config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    if not path.is_file():
        raise ObliviateError(f"{folder}: not a model folder (no config.json)")
    return json.loads(path.read_text(encoding="utf-8"))


def _check_configs(base: Path, tuned: Path) -> None:
    a, b = _config(base), _config(tuned)
    for key in ("model_type", "architectures"):
        if a.get(key) != b.get(key):
            raise ObliviateError(f"incompatible checkpoints: {key} is {a.get(key)!r} in {base} but {b.get(key)!r} "
                                 f"in {tuned}")


def _safetensors_files(folder: Path) -> list[str] | None:
    """The checkpoint's safetensors files in order, or None when it has none."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        return sorted(set(weight_map.values()))
    if (folder / "model.safetensors").is_file():
        return ["model.safetensors"]
    return None


def _safetensors_shapes(folder: Path, files: list[str]) -> dict[str, tuple[int, ...]]:
    from safetensors import safe_open

    shapes: dict[str, tuple[int, ...]] = {}
    for fname in files:
        with safe_open(str(folder / fname), framework="pt") as fh:
            for name in fh.keys():  # noqa: SIM118 - safe_open is not a dict
                shapes[name] = tuple(fh.get_slice(name).get_shape())
    return shapes


def checkpoint_fingerprint(model: str | os.PathLike) -> str:
    """A short hash of a checkpoint's config and weight files: tells whether "the same" model spec
    still means the same weights (a rebuilt built-in, a re-trained folder) before mixing runs."""
    import hashlib

    from obliviate.models import resolve_model

    folder = Path(resolve_model(model))
    digest = hashlib.sha256()
    files = [folder / "config.json", *sorted(p for p in folder.iterdir() if p.name.endswith(WEIGHT_SUFFIXES))]
    for path in files:
        digest.update(path.name.encode())
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 24), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def merge_checkpoints(base: str | os.PathLike, tuned: str | os.PathLike, alpha: float, out: str | os.PathLike, *,
                      overwrite: bool = False) -> Path:
    """Write θ_u = α·base + (1−α)·tuned to ``out`` as a normal HF folder (config + tokenizer of base)."""
    from obliviate.models import resolve_model

    parse_alphas(alpha)
    base_dir, tuned_dir = Path(resolve_model(base)), Path(resolve_model(tuned))
    folder = RunFolder.prepare(out, "merge", overwrite=overwrite)  # only an earlier merge is ever replaced
    out = folder.path
    if not base_dir.is_dir() or not tuned_dir.is_dir():
        raise ObliviateError("obliviate merge works on local model folders (or built-in names); "
                             f"got {base} and {tuned}")
    _check_configs(base_dir, tuned_dir)
    base_files, tuned_files = _safetensors_files(base_dir), _safetensors_files(tuned_dir)
    if base_files and tuned_files:
        check_compatible(_safetensors_shapes(base_dir, base_files), _safetensors_shapes(tuned_dir, tuned_files),
                         base_name=str(base), tuned_name=str(tuned))
        folder.begin()
        _stream_merge(base_dir, base_files, tuned_dir, tuned_files, alpha, out)
        for item in base_dir.iterdir():  # config, tokenizer, generation config, index: from base
            if item.is_file() and not item.name.endswith(WEIGHT_SUFFIXES) and item.name not in (MERGE_INFO, MARKER):
                shutil.copy2(item, out / item.name)
    else:  # e.g. pytorch_model.bin: load both whole
        from obliviate.models import load_model, save_model

        base_model, tok = load_model(base_dir)
        tuned_model, _ = load_model(tuned_dir)
        check_compatible(base_model.state_dict(), tuned_model.state_dict(), base_name=str(base),
                         tuned_name=str(tuned))
        folder.begin()
        average_into(tuned_model, base_model.state_dict(), alpha)
        save_model(tuned_model.to(base_model.dtype), tok, out)
    (out / MERGE_INFO).write_text(json.dumps({
        "formula": "alpha * base + (1 - alpha) * tuned", "alpha": alpha, "base": str(base), "tuned": str(tuned),
        "base_fingerprint": checkpoint_fingerprint(base_dir), "tuned_fingerprint": checkpoint_fingerprint(tuned_dir)},
        indent=2) + "\n", encoding="utf-8")
    return out


def _stream_merge(base_dir: Path, base_files: list[str], tuned_dir: Path, tuned_files: list[str], alpha: float,
                  out: Path) -> None:
    """Average tensor by tensor; the output keeps the base checkpoint's sharding."""
    from contextlib import ExitStack

    from safetensors import safe_open
    from safetensors.torch import save_file

    from obliviate.utils import progress

    with ExitStack() as stack:
        tuned_handles = [stack.enter_context(safe_open(str(tuned_dir / f), framework="pt")) for f in tuned_files]
        where = {name: h for h in tuned_handles for name in h.keys()}  # noqa: SIM118
        for fname in progress(base_files, desc="merging shards"):
            with safe_open(str(base_dir / fname), framework="pt") as fh:
                merged = {name: average_tensor(fh.get_tensor(name), where[name].get_tensor(name), alpha, name)
                          for name in fh.keys()}  # noqa: SIM118
                save_file(merged, str(out / fname), metadata=fh.metadata() or {"format": "pt"})
