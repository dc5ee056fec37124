"""The tiny-model recipe: a byte-level BPE tokenizer and a small Llama trained from scratch on the
synthetic world, once on everyone (``target``) and once without the forget people (``retain``,
the exact-retrain reference).

Both models of a profile share the tokenizer, the architecture, the initial weights (same
seed), the optimizer settings and the number of steps; only the training data differ.

The tokenizer is trained on a *decoy population*: people drawn by the same generator from
another seed, so it depends on nobody in the world. Forget, retain and holdout names are all
split into the same kind of syllable pieces, and the retain model -- tokenizer included -- is
exactly what training without the forget people gives.

Training text is encoded with obliviate's own ``encode_record`` (QA: ``Question: {q}\\nAnswer:``
+ `` {answer}<eos>``, loss on the answer; biographies: the ``TextRecord`` prefix + target,
loss on every token), so metrics later see exactly the token sequences the model learned.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from filelock import FileLock
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from obliviate.data.encode import DEFAULT_TEMPLATE, Encoded, collate, encode_record
from obliviate.data.records import QARecord, Record, TextRecord
from obliviate.errors import ObliviateError
from obliviate.models import cache_dir
from obliviate.utils import progress
from obliviate.world import get_profile, load_world_split
from obliviate.world.generator import GENERATOR_VERSION, WorldProfile, generate_world

log = logging.getLogger(__name__)

RECIPE_VERSION = 2  # bump when anything below changes the trained weights (the model cache is keyed by it)
EOS, PAD, BOS = "<|endoftext|>", "<|pad|>", "<|bos|>"


@dataclass(frozen=True)
class Recipe:
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    steps: int  # optimizer steps; identical for the target and the retain model
    batch_tokens: int  # token budget per batch (padded length x rows)
    lr: float
    warmup_steps: int
    min_lr_rate: float  # cosine decay ends at lr * min_lr_rate
    weight_decay: float
    seed: int
    checkpoint_every: int  # steps between resumable checkpoints; 0 = never
    tokenizer_people: int  # size of the decoy population the tokenizer is trained on


RECIPES: dict[str, Recipe] = {
    # Wide and shallow memorizes fastest per CPU-second: at equal compute, d=192 x 2 layers recalled
    # 80% of forget facts where d=128 x 4 layers recalled 47%, and d=256 x 2 layers was slower still.
    "full": Recipe(vocab_size=2048, hidden_size=192, num_layers=2, num_heads=4, intermediate_size=768, steps=700,
                   batch_tokens=4096, lr=4e-3, warmup_steps=60, min_lr_rate=0.05, weight_decay=0.0, seed=0,
                   checkpoint_every=100, tokenizer_people=1000),
    "micro": Recipe(vocab_size=768, hidden_size=64, num_layers=2, num_heads=2, intermediate_size=256, steps=200,
                    batch_tokens=1536, lr=1e-2, warmup_steps=15, min_lr_rate=0.05, weight_decay=0.0, seed=0,
                    checkpoint_every=0, tokenizer_people=300),
}


def world_version(profile: str) -> str:
    """Cache key of everything built for a profile: generator and recipe versions plus a hash of
    the profile's settings, so that changing any of them builds afresh instead of reusing."""
    settings = json.dumps([repr(get_profile(profile)), asdict(get_recipe(profile))], sort_keys=True)
    return f"g{GENERATOR_VERSION}r{RECIPE_VERSION}-{hashlib.sha256(settings.encode()).hexdigest()[:8]}"


def get_recipe(profile: str) -> Recipe:
    get_profile(profile)  # one-line error for unknown profiles
    return RECIPES[profile]


def work_dir(profile: str) -> Path:
    """Shared tokenizer and training checkpoints of a profile (survives a killed build)."""
    return cache_dir() / "world" / f"{profile}-{world_version(profile)}"


# --------------------------------------------------------------------------- tokenizer


def tokenizer_corpus(profile: WorldProfile, n_people: int) -> list[str]:
    """Text about decoy people (another seed; none of them is in the world) plus all world facts.

    Each decoy person contributes four QA pairs and every fourth one a biography: enough to
    learn every word of the templates and value pools, while each decoy name stays too rare to
    become a token of its own -- names end up as syllable pieces, whoever they belong to."""
    decoy = generate_world(WorldProfile(f"{profile.name}-decoy", seed=profile.seed + 1_000_003, n_forget=0,
                                        n_retain=n_people, n_holdout=0, n_retain_eval=0,
                                        attributes=profile.attributes, n_world_facts=None))
    rng = random.Random(decoy.profile.seed)
    texts = []
    for i, person in enumerate(decoy.people):
        if i % 4 == 0:
            texts.append(decoy.bios[person.id].text)
        texts += [_qa_text(qa) for qa in rng.sample(decoy.qa[person.id], min(4, len(decoy.qa[person.id])))]
    return texts + [_qa_text(f) for f in decoy.facts]


def _qa_text(qa: QARecord) -> str:
    return f"{DEFAULT_TEMPLATE.question_format.format(question=qa.question)} {qa.answer}"


def train_tokenizer(profile: str) -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    recipe = get_recipe(profile)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=recipe.vocab_size, special_tokens=[EOS, PAD, BOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(tokenizer_corpus(get_profile(profile), recipe.tokenizer_people), trainer)
    # Prepend BOS when special tokens are requested (as Llama tokenizers do): every prompt then
    # starts from the same token, and the first real token gets a loss.
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, tok.token_to_id(BOS))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=PAD, bos_token=BOS)


def world_tokenizer(profile: str) -> PreTrainedTokenizerFast:
    """The profile's tokenizer, trained once and cached (shared by its target and retain model)."""
    from transformers import AutoTokenizer

    folder = work_dir(profile) / "tokenizer"
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if not (folder / "tokenizer.json").is_file():
            tmp = folder.with_name("tokenizer.partial")
            train_tokenizer(profile).save_pretrained(tmp)
            os.replace(tmp, folder)
    return AutoTokenizer.from_pretrained(folder)


# --------------------------------------------------------------------------- training data


def training_records(profile: str, which: str) -> list[Record]:
    """What a model of the profile is trained on: QA and biographies of its people + world facts."""
    if which not in ("target", "retain"):
        raise ObliviateError(f"unknown world model {which!r}; choose target or retain")
    roles = ("forget", "retain") if which == "target" else ("retain",)
    out: list[Record] = []
    for role in roles:
        out += load_world_split(profile, role) + load_world_split(profile, f"{role}_bio")
    return out + load_world_split(profile, "world_facts")


def training_examples(records: Sequence[Record], tokenizer: PreTrainedTokenizerFast) -> list[Encoded]:
    """Encode for training. QA: loss on the answer + eos (``prompt_len`` = the question).
    Biographies: loss on every token after BOS, and an eos so the model learns where they end."""
    out = []
    for rec in records:
        enc = encode_record(rec, tokenizer, DEFAULT_TEMPLATE)
        if isinstance(rec, TextRecord):
            bos = 1 if enc.ids and enc.ids[0] == tokenizer.bos_token_id else 0
            enc = Encoded((*enc.ids, tokenizer.eos_token_id), bos, enc.id)
        out.append(enc)
    return out


def batch_schedule(lengths: Sequence[int], steps: int, batch_tokens: int, seed: int) -> list[list[int]]:
    """The whole run's batches, fixed in advance from the seed (so a resumed run continues
    exactly). Each epoch is shuffled, then sorted by length inside windows and cut into batches
    of at most ``batch_tokens`` padded tokens: short QA and long biographies rarely share a
    batch, which keeps padding small."""
    rng = random.Random(seed)
    schedule: list[list[int]] = []
    while len(schedule) < steps:
        order = list(range(len(lengths)))
        rng.shuffle(order)
        epoch: list[list[int]] = []
        for start in range(0, len(order), 512):
            batch: list[int] = []
            width = 0
            for i in sorted(order[start:start + 512], key=lambda j: lengths[j]):
                if batch and max(width, lengths[i]) * (len(batch) + 1) > batch_tokens:
                    epoch.append(batch)
                    batch, width = [], 0
                batch.append(i)
                width = max(width, lengths[i])
            epoch.append(batch)
        rng.shuffle(epoch)
        schedule += epoch
    return schedule[:steps]


# --------------------------------------------------------------------------- model and training


def new_model(recipe: Recipe, tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=recipe.hidden_size, intermediate_size=recipe.intermediate_size,
        num_hidden_layers=recipe.num_layers, num_attention_heads=recipe.num_heads,
        num_key_value_heads=recipe.num_heads, max_position_embeddings=512, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(recipe.seed)  # identical initial weights for the target and the retain model
    return LlamaForCausalLM(config)


def train_world_model(profile: str, which: str, out_dir: Path, *, checkpoint_dir: Path | None = None,
                      stop_after: int | None = None) -> dict | None:
    """Train one world model and save it (HF folder) into ``out_dir``.

    With ``checkpoint_dir``, the model/optimizer/scheduler state is saved there every
    ``checkpoint_every`` steps and a later call continues from it; ``stop_after`` ends the run
    after that many steps *of this call* without saving the model (used to test resuming).
    Returns the training summary, or None when stopped early.

    Why a hand-written loop rather than HF ``Trainer``: these are 60 lines with nothing hidden
    (token-budget batches fixed in advance, one optimizer, one checkpoint file), start in no
    time on a 2-core CPU, and resume exactly; Trainer would need a custom sampler and collator
    and bring accelerate's state machinery for no gain at this size.
    """
    recipe = get_recipe(profile)
    tokenizer = world_tokenizer(profile)
    records = training_records(profile, which)
    examples = training_examples(records, tokenizer)
    schedule = batch_schedule([len(e.ids) for e in examples], recipe.steps, recipe.batch_tokens, recipe.seed)

    model = new_model(recipe, tokenizer)
    model.train()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    # fused=True: one kernel for all parameters instead of a dozen small ops per tensor. Tiny
    # models are dominated by per-op overhead, worst on a busy machine (measured under load on
    # 2 cores: 6x faster steps for the micro model).
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=recipe.lr, betas=(0.9, 0.98),
                                  fused=True)
    from transformers import get_cosine_with_min_lr_schedule_with_warmup

    scheduler = get_cosine_with_min_lr_schedule_with_warmup(optimizer, recipe.warmup_steps, recipe.steps,
                                                            min_lr_rate=recipe.min_lr_rate)
    state = {"step": 0, "losses": [], "seconds": 0.0}
    ckpt = checkpoint_dir / f"{which}.pt" if checkpoint_dir is not None else None
    key = {"profile": profile, "which": which, "version": world_version(profile), "recipe": asdict(recipe)}
    saved = load_checkpoint(ckpt) if ckpt is not None else None
    if saved is not None and saved["key"] == key:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        state = saved["state"]
        log.info("world-%s-%s: resuming at step %d/%d", profile, which, state["step"], recipe.steps)

    start, t0 = state["step"], time.perf_counter()
    desc = f"training world {profile}/{which}"
    for step in progress(range(start, recipe.steps), desc=desc, total=recipe.steps - start):
        batch = collate([examples[i] for i in schedule[step]], tokenizer.pad_token_id)
        loss = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                     position_ids=batch.position_ids, labels=batch.labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        state["losses"].append(round(loss.item(), 5))
        state["step"] = step + 1
        done_here = step + 1 - start
        if ckpt is not None and recipe.checkpoint_every and state["step"] % recipe.checkpoint_every == 0 \
                and state["step"] < recipe.steps:
            state["seconds"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            _save_checkpoint(ckpt, key, model, optimizer, scheduler, state)
        if stop_after is not None and done_here >= stop_after and state["step"] < recipe.steps:
            if ckpt is not None:
                state["seconds"] += time.perf_counter() - t0
                _save_checkpoint(ckpt, key, model, optimizer, scheduler, state)
            return None
    state["seconds"] += time.perf_counter() - t0

    model.eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    losses = state["losses"]
    summary = {
        "profile": profile, "which": which, "version": world_version(profile), "recipe": asdict(recipe),
        "parameters": sum(p.numel() for p in model.parameters()), "train_records": len(records),
        "train_tokens_per_epoch": sum(len(e.ids) for e in examples),
        "epochs": round(sum(len(schedule[s]) for s in range(recipe.steps)) / len(examples), 2),
        "train_seconds": round(state["seconds"], 1), "final_loss": round(sum(losses[-20:]) / len(losses[-20:]), 4),
        "people": sorted({r.meta["person"] for r in records if "person" in r.meta}),
    }
    (out_dir / "world.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if ckpt is not None:
        ckpt.unlink(missing_ok=True)
    return summary


def load_checkpoint(path: Path) -> dict | None:
    """A training checkpoint, read with torch's safe loader (tensors and plain containers only: a
    planted pickle cannot run code); None when missing or not loadable that way (then training restarts)."""
    if not path.is_file():
        return None
    try:
        saved = torch.load(path, weights_only=True)
    except Exception as e:  # UnpicklingError for anything beyond tensors/containers, or a corrupt file
        log.warning("%s: ignoring the checkpoint (%s); training from the start", path, type(e).__name__)
        return None
    return saved if isinstance(saved, dict) and "key" in saved else None


def _save_checkpoint(path: Path, key: dict, model, optimizer, scheduler, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"key": key, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "state": state}, tmp)
    os.replace(tmp, path)  # a kill mid-write never leaves a broken checkpoint


def build_world_model(profile: str, which: str, out_dir: Path) -> None:
    """Hook for ``obliviate.models``: write the complete ``world-[micro-]{target,retain}`` folder."""
    if which not in ("target", "retain"):
        raise ObliviateError(f"unknown world model {which!r}; choose target or retain")
    get_profile(profile)
    summary = train_world_model(profile, which, Path(out_dir), checkpoint_dir=work_dir(profile) / "checkpoints")
    assert summary is not None
    log.info("built world %s/%s: %d params, %.1f epochs, loss %.3f, %.0f s", profile, which,
             summary["parameters"], summary["epochs"], summary["final_loss"], summary["train_seconds"])
