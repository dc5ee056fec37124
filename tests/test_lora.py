"""LoRA (``train.lora.enabled=true``) for every method, on the synthetic micro world.

What must hold: LoRA unlearns (ICU: EL10 falls, retain perplexity holds); only adapter weights train and the base weights stay the original model; a
method that needs the original model gets it by switching the adapter off (the engine holds no
second copy of the weights); the merged save is an ordinary HF folder equal to base + adapter;
the adapter save loads with peft (and with ``AutoModelForCausalLM`` / ``load_model``); a killed
LoRA run resumes to exactly the uninterrupted result. Gradient checkpointing really recomputes
and changes nothing in the numbers.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch

import obliviate
from obliviate import unlearning
from obliviate.engine import Callback
from obliviate.engine.distributed import weights_sha256
from obliviate.engine.reference import AdapterReference
from obliviate.methods import METHODS

FAST = ["train.lora.enabled=true", "train.lora.r=4", "train.lr=1e-2", "train.batch_size=4", "train.scheduler=constant",
        "train.gradient_accumulation_steps=1", "stop.max_epochs=1", "stop.el_threshold=null",
        "stop.ma_threshold=null", "eval.retain=false", "refinement.enabled=false", "report.enabled=false"]
EXTRA = {"llmu": ["method_args.mismatch_answers=2"], "ulmr": ["method_args.restructured=true"],  # ulmr: its SFT step
         "rmu": ["method_args.layer=1", "method_args.trainable_layers=[0,1]"],  # the micro model has 2 blocks
         "altpo": ["method_args.alternates=2"]}


@pytest.fixture(scope="module")
def micro():
    from obliviate.data.sources import load_data
    from obliviate.models import load_model

    model, tok = load_model("world-micro-target")
    return model, tok, load_data("world:micro:forget")[:8], load_data("world:micro:retain")[:16]


def _run(micro, method: str, overrides: list[str], **kwargs):
    model, tok, forget, retain = micro
    extra = {"analogous": retain[:8]} if method == "icu" else {}
    # One training run of each method's loss (for ulmr: its SFT step, not the whole recipe).
    return unlearning.unlearn(copy.deepcopy(model), forget, method=method, retain=retain, tokenizer=tok,
                              overrides=[*FAST, *EXTRA.get(method, []), *overrides], **extra, **kwargs)


def _texts(records) -> list[str]:
    return [f"Question: {r.question}\nAnswer: {r.answer}" for r in records]


def _logits(model: torch.nn.Module, tok, texts: list[str]) -> torch.Tensor:
    batch = tok(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        return model(**batch).logits


def held_parameter_bytes(model, reference) -> int:
    """Bytes of the distinct weight tensors the engine holds: the trained model plus whatever its
    reference keeps (a frozen copy would double this; the adapter-disabled model adds nothing)."""
    modules = [model, getattr(reference, "model", None)]
    storages = {}
    for module in modules:
        if module is None:
            continue
        for t in [*module.parameters(), *module.buffers()]:
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
    return sum(storages.values())


class Inspect(Callback):
    """Checks, right after the first epoch trained (the adapter is no longer a no-op), that the
    engine's reference is the original model without being a copy of it."""

    def __init__(self, original: torch.nn.Module, tok, texts: list[str], forget: list):
        self.original, self.tok, self.texts, self.forget, self.seen = original, tok, texts, forget, {}

    def on_evaluate(self, args, report, control, *, model, reference, **kwargs):
        if report.epoch != 1:
            return None
        want = _logits(self.original, self.tok, self.texts)
        trained = model
        self.seen["trainable"] = [n for n, p in trained.named_parameters() if p.requires_grad]
        self.seen["adapted_differs"] = not torch.allclose(_logits(trained, self.tok, self.texts), want, atol=1e-4)
        with trained.disable_adapter():  # the base weights are untouched: adapter off == original model
            self.seen["base_equal"] = torch.allclose(_logits(trained, self.tok, self.texts), want, atol=1e-6)
        self.seen["reference"] = reference
        self.seen["held_bytes"] = held_parameter_bytes(model, reference)
        self.seen["model_bytes"] = sum(p.nbytes for p in self.original.parameters())
        if args.method_cfg.requirements().reference_model:
            from obliviate.data.encode import collate, encode_records

            batch = collate(encode_records(self.forget[:3], self.tok), self.tok.pad_token_id)
            self.seen["reference_equal"] = torch.allclose(reference.logits(batch), _forward(self.original, batch),
                                                          atol=1e-6)
        return None


def _forward(model: torch.nn.Module, batch) -> torch.Tensor:
    from obliviate.methods.losses import forward_logits

    with torch.no_grad():
        return forward_logits(model, batch)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_trains_adapters_only_with_the_adapter_disabled_as_reference(method, micro):
    model, tok, forget, _ = micro
    inspect = Inspect(model, tok, _texts(forget[:2]), forget)
    res = _run(micro, method, [], callbacks=[inspect])
    seen = inspect.seen
    row = res.history[1]
    assert row["steps"] == 2 and torch.isfinite(torch.tensor(row["loss"]))
    assert seen["trainable"] and all("lora_" in name for name in seen["trainable"])
    assert seen["adapted_differs"] and seen["base_equal"]
    if METHODS[method].config(**({"restructured": True} if method == "ulmr" else {})).requirements().reference_model:
        ref = seen["reference"]
        assert isinstance(ref, AdapterReference) and seen["reference_equal"]
    else:
        assert getattr(seen["reference"], "model", None) is None  # cached log-probs at most
    # No second copy: the weights held are the model's plus the small adapters.
    assert seen["held_bytes"] < 1.25 * seen["model_bytes"], (seen["held_bytes"], seen["model_bytes"])
    # The returned model is the plain architecture with the adapters merged in, and it moved.
    assert type(res.model) is type(model) and not hasattr(res.model, "peft_config")
    assert any(not torch.equal(a, b) for a, b in zip(res.model.state_dict().values(), model.state_dict().values()))


def test_lora_icu_forgets_while_retain_holds(micro):
    """Adapters alone unlearn: EL10 falls far while retain perplexity stays within 1.5x."""
    model, tok, forget, retain = micro
    res = obliviate.unlearn(copy.deepcopy(model), forget, method="icu", analogous=retain[:8], retain=retain,
                            tokenizer=tok, overrides=[*FAST, "train.lora.r=8", "train.lr=5e-3", "stop.max_epochs=2",
                                                      "eval.retain=true"])
    before, after = res.history[0], res.history[-1]
    print(f"\nLoRA ICU: EL10 {before['el_10']:.3f} -> {after['el_10']:.3f}, MA {before['ma']:.3f} -> {after['ma']:.3f}, "
          f"retain ppl {before['retain_ppl']:.4f} -> {after['retain_ppl']:.4f}")
    assert after["el_10"] < 0.6 * before["el_10"] and after["ma"] < before["ma"]
    assert after["retain_ppl"] <= 1.5 * before["retain_ppl"]


def test_full_finetune_reference_is_a_second_copy(micro):
    """The contrast that makes the LoRA check above meaningful: without LoRA, ICU's frozen
    reference holds a whole second set of weights."""

    class HeldBytes(Callback):
        def on_evaluate(self, args, report, control, *, model, reference, **kwargs):
            self.held = held_parameter_bytes(model, reference)

    probe = HeldBytes()
    _run(micro, "icu", ["train.lora.enabled=false", "train.lr=1e-4"], callbacks=[probe])
    assert probe.held >= 1.99 * sum(p.nbytes for p in micro[0].parameters())


def test_merged_and_adapter_saves_load_and_agree(micro, tmp_path):
    from peft import PeftModel, get_peft_model_state_dict
    from transformers import AutoModelForCausalLM

    from obliviate.models import load_model

    model, tok, forget, _ = micro
    merged = _run(micro, "kl", ["train.lora.save=merged"], out=tmp_path / "merged")
    adapter = _run(micro, "kl", ["train.lora.save=adapter"], out=tmp_path / "adapter")
    assert merged.summary["model_format"] == "hf" and adapter.summary["model_format"] == "peft_adapter"

    # merged: an ordinary HF folder holding exactly the reported weights
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "merged" / "model", dtype=torch.float32)
    assert not (tmp_path / "merged" / "model" / "adapter_config.json").exists()
    assert weights_sha256(plain.state_dict()) == merged.summary["weights_sha256"]

    # adapter: a few adapter tensors, loaded by peft on top of the original model
    folder = tmp_path / "adapter" / "model"
    assert (folder / "adapter_model.safetensors").is_file() and not (folder / "model.safetensors").exists()
    assert (folder / "adapter_model.safetensors").stat().st_size < 0.5 * sum(p.nbytes for p in model.parameters())
    peft_model = PeftModel.from_pretrained(copy.deepcopy(model), folder).eval()
    assert weights_sha256(get_peft_model_state_dict(peft_model)) == adapter.summary["weights_sha256"]

    # the same training (same seed) saved both ways: merged weights == base + adapter
    texts = _texts(forget[:3])
    want = _logits(peft_model, tok, texts)
    assert torch.allclose(_logits(plain, tok, texts), want, atol=1e-5)
    assert not torch.allclose(_logits(model, tok, texts), want, atol=1e-4)  # and it is not the original
    auto = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()  # transformers' peft integration
    loaded, _ = load_model(folder)  # obliviate's loader accepts the adapter folder too
    assert torch.allclose(_logits(auto, tok, texts), want, atol=1e-5)
    assert torch.allclose(_logits(loaded, tok, texts), want, atol=1e-5)


class KillAfter(Callback):
    def on_checkpoint(self, args, report, control, **kwargs):
        if report.epoch == 1:
            raise KeyboardInterrupt


def test_lora_resume_after_kill_equals_uninterrupted_run(micro, tmp_path):
    overrides = ["stop.max_epochs=2", "train.lora.save=adapter", "train.lr=5e-3"]
    full = _run(micro, "icu", overrides, out=tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        _run(micro, "icu", overrides, out=tmp_path / "killed", callbacks=[KillAfter()])
    checkpoint = tmp_path / "killed" / "checkpoints" / "epoch-0001"
    saved = sum(f.stat().st_size for f in checkpoint.rglob("model*.safetensors"))
    assert 0 < saved < 0.5 * sum(p.nbytes for p in micro[0].parameters())  # adapters only, not the base weights
    model, tok, forget, retain = micro
    resumed = obliviate.unlearn(copy.deepcopy(model), forget, retain=retain, analogous=retain[:8], tokenizer=tok,
                                out=tmp_path / "killed", resume=True)
    strip = [{k: v for k, v in row.items() if k != "time_s"} for res in (full, resumed) for row in res.history]
    assert strip[:3] == strip[3:] and len(strip) == 6
    assert resumed.summary["weights_sha256"] == full.summary["weights_sha256"]
    again = obliviate.unlearn(out=tmp_path / "killed", resume=True)  # finished: loads base + adapter
    assert again.summary == json.loads((tmp_path / "killed" / "summary.json").read_text())
    texts = _texts(forget[:2])
    assert torch.allclose(_logits(again.model, tok, texts), _logits(resumed.model, tok, texts), atol=1e-5)


class CountMLPCalls:
    """Counts calls of the first decoder layer's MLP made with gradients on: training passes and
    their recomputation in backward (evaluation runs without gradients). It wraps ``forward``
    itself: transformers checkpoints the layer's ``forward`` and torch runs no module hooks when
    it recomputes."""

    def __init__(self, model: torch.nn.Module):
        self.calls = 0
        mlp = model.model.layers[0].mlp
        forward = mlp.forward

        def counted(*args, **kwargs):
            self.calls += torch.is_grad_enabled()
            return forward(*args, **kwargs)

        mlp.forward = counted


def test_gradient_checkpointing_recomputes_and_changes_nothing(micro):
    model, tok, forget, retain = micro
    results, calls = {}, {}
    for checkpointing in (False, True):
        copy_ = copy.deepcopy(model)
        counter = CountMLPCalls(copy_)
        results[checkpointing] = obliviate.unlearn(
            copy_, forget, method="kl", retain=retain, tokenizer=tok,
            overrides=[*FAST, f"train.gradient_checkpointing={str(checkpointing).lower()}"])
        calls[checkpointing] = counter.calls
    assert calls[False] == 4  # 2 steps x (forget + retain), the reference forward has no gradients
    assert calls[True] == 2 * calls[False]  # every layer forward is recomputed in backward
    a, b = results[False], results[True]
    assert a.history[1]["loss"] == pytest.approx(b.history[1]["loss"], abs=1e-6)
    assert all(torch.allclose(x, y, atol=1e-6) for x, y in zip(a.model.state_dict().values(),
                                                               b.model.state_dict().values()))


def test_bf16_autocast_with_lora(micro):
    res = _run(micro, "icu", ["train.mixed_precision=bf16"])
    assert res.history[1]["steps"] == 2 and torch.isfinite(torch.tensor(res.history[1]["loss"]))
    assert next(res.model.parameters()).dtype == torch.float32  # autocast computes in bf16, weights stay fp32
