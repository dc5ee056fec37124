"""Who writes ULMR's restructured data: pluggable generators.

ULMR (§3.1) needs two things per forget instruction: rewritten instructions (the paper rewrites
each one twice) and a *negative response* for every instruction. A ``Generator`` provides both:

* ``ModelGenerator``  -- an HF model, by default the model being unlearned itself, as in the
  paper (x' ~ p_θ(· | rewrite_prompt(x))). Uses the tokenizer's chat template when it has one;
  rewrites are sampled with a seed so the two rewrites differ.
* ``OpenAIGenerator`` -- any OpenAI-compatible chat endpoint (OpenAI, vLLM, llama.cpp server,
  Ollama, ...): base URL + model name, the API key read from an environment variable.
* ``TemplateGenerator`` -- fully offline and deterministic: paraphrase templates for the
  questions and refusal answers from a list (our built-in one, or a file such as TOFU's
  ``idontknow.jsonl``).

The two LLM generators send the paper's prompts (``obliviate.ulmr.prompts``). Every output is a
``Generation`` that remembers which generator and which prompt made it; the restructured file
stores both next to each line.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from obliviate.data.refusals import load_refusals
from obliviate.errors import ObliviateError
from obliviate.ulmr.prompts import fill, prompt_name

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Generation:
    text: str
    generator: str  # e.g. "template", "model:world-micro-target", "openai:gpt-4o-mini@https://..."
    prompt: str  # e.g. "ulmr:prompt_rewrite", "template:paraphrase#3", "refusal:builtin#12"
    note: str = field(default="", metadata={"help": "e.g. why a fallback was used"})


@dataclass
class GeneratorConfig:
    """How to build a generator (the ``generator.*`` keys of a ULMR config / CLI options)."""

    kind: str = field(default="template", metadata={"help": "\"template\" | \"model\" | \"openai\""})
    refusals: str | None = field(default=None, metadata={
        "help": "template: refusal answers, one per line (plain text or JSONL with a \"text\" field); None "
                "= the built-in list (obliviate/builtin/refusals.jsonl)."})
    model: str | None = field(default=None, metadata={
        "help": "model: a model spec to generate with; None = the model being unlearned. openai: the model "
                "name the endpoint serves."})
    base_url: str | None = field(default=None, metadata={"help": "openai: e.g. http://localhost:8000/v1"})
    api_key_env: str = field(default="OPENAI_API_KEY", metadata={
        "help": "openai: environment variable holding the key (optional)"})
    max_new_tokens: int = field(default=64, metadata={"help": "model / openai: tokens per generation"})
    temperature: float = field(default=0.8, metadata={"help": "sampling for the rewrites (they must differ)"})
    top_p: float = field(default=0.95, metadata={"help": "nucleus sampling of the rewrites"})
    sample_negatives: bool = field(default=False, metadata={
        "help": "negative responses: greedy (False) or sampled like rewrites"})
    batch_size: int = field(default=8, metadata={"help": "model: prompts per generate() call"})
    concurrency: int = field(default=4, metadata={"help": "openai: requests in flight"})
    timeout_s: float = field(default=120.0, metadata={"help": "openai: per request"})


class Generator(ABC):
    """Rewrites instructions and writes negative responses. Subclass it to plug in your own."""

    name: str = "generator"

    @abstractmethod
    def rewrite(self, instructions: Sequence[str], *, n: int, prompt: str, seed: int) -> list[list[Generation]]:
        """``n`` rewrites of each instruction (outer list aligned with ``instructions``)."""

    @abstractmethod
    def negative(self, instructions: Sequence[str], *, prompt: str, seed: int) -> list[Generation]:
        """One negative (refusing / not-in-my-knowledge) response per instruction."""

    def describe(self) -> dict[str, Any]:
        """What identifies this generator's output (goes into the cache fingerprint)."""
        return {"name": self.name}


# --------------------------------------------------------------------------- templates

# Deterministic paraphrases: wrappers that keep the question intact (so the rewritten instruction
# still asks for the same fact, as the paper's rewrite prompt requires) but change its surface.
PARAPHRASE_TEMPLATES: tuple[str, ...] = (
    "Could you tell me this: {q}",
    "I would like to know the following. {q}",
    "Please answer this question: {q}",
    "Here is a question for you. {q}",
    "{q} Please answer in one sentence.",
    "{q} I am curious about it.",
    "Do you know the answer? {q}",
    "Help me with a question: {q}",
)


def _stable_index(*parts: object) -> int:
    """A hash that is the same in every process (Python's ``hash`` is salted per run)."""
    digest = hashlib.sha256("\x00".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big")


class TemplateGenerator(Generator):
    """Offline and deterministic: paraphrase templates + refusals picked by a stable hash."""

    name = "template"

    def __init__(self, refusals: Sequence[str] | None = None, refusal_source: str = "builtin",
                 templates: Sequence[str] = PARAPHRASE_TEMPLATES):
        if refusals is None:
            refusals, refusal_source = load_refusals(None)
        if not refusals:
            raise ObliviateError("TemplateGenerator needs at least one refusal answer")
        self.refusals, self.refusal_source, self.templates = list(refusals), refusal_source, tuple(templates)

    @classmethod
    def from_file(cls, path: str | os.PathLike | None) -> TemplateGenerator:
        refusals, source = load_refusals(path)
        return cls(refusals, source)

    def paraphrases(self, instruction: str, n: int, seed: int) -> list[Generation]:
        if n > len(self.templates):
            raise ObliviateError(f"template generator has {len(self.templates)} paraphrase templates; "
                                 f"cannot make {n} different rewrites")
        start = _stable_index(seed, instruction) % len(self.templates)
        out = []
        for k in range(n):  # consecutive templates: the n rewrites always differ
            i = (start + k) % len(self.templates)
            out.append(Generation(self.templates[i].format(q=instruction.strip()), self.name,
                                  f"template:paraphrase#{i}"))
        return out

    def refusal(self, instruction: str, seed: int) -> Generation:
        i = _stable_index(seed, "refusal", instruction) % len(self.refusals)
        return Generation(self.refusals[i], self.name, f"refusal:{self.refusal_source}#{i}")

    def rewrite(self, instructions: Sequence[str], *, n: int, prompt: str, seed: int) -> list[list[Generation]]:
        return [self.paraphrases(x, n, seed) for x in instructions]

    def negative(self, instructions: Sequence[str], *, prompt: str, seed: int) -> list[Generation]:
        return [self.refusal(x, seed) for x in instructions]

    def describe(self) -> dict[str, Any]:
        refusal_hash = hashlib.sha256("\n".join(self.refusals).encode()).hexdigest()[:12]
        return {"name": self.name, "refusals": f"{self.refusal_source}:{refusal_hash}",
                "templates": hashlib.sha256("\n".join(self.templates).encode()).hexdigest()[:12]}


# --------------------------------------------------------------------------- LLM generators

_LABEL = re.compile(r"^\s*(?:re-?written|revised|new)?\s*(?:rewrite\s+)?(?:instruction|question|answer|response)\s*:\s*",
                    re.IGNORECASE)
_QUOTES = "\"'“”‘’`"


def clean_rewrite(text: str) -> str:
    """The first non-empty line, without a leading ``Rewrite Instruction:``-style label or quotes."""
    for line in text.strip().splitlines():
        line = _LABEL.sub("", line.strip()).strip().strip(_QUOTES).strip()
        if line:
            return line
    return ""


def clean_response(text: str) -> str:
    """The generated answer without a leading ``Answer:`` label or wrapping quotes."""
    text = _LABEL.sub("", text.strip()).strip()
    if len(text) > 1 and text[0] in _QUOTES and text[-1] in _QUOTES:
        text = text[1:-1].strip()
    return text


class PromptedGenerator(Generator):
    """An LLM that answers the paper's prompts; subclasses only implement ``complete``.

    Empty or repeated rewrites are re-sampled (a few tries); what is still empty afterwards falls
    back to a template paraphrase / built-in refusal, and the line's ``note`` says so.
    """

    max_tries = 3

    def __init__(self, *, sample_negatives: bool = False, fallback: TemplateGenerator | None = None):
        self.sample_negatives = sample_negatives
        self._fallback = fallback

    @property
    def fallback(self) -> TemplateGenerator:
        if self._fallback is None:
            self._fallback = TemplateGenerator()
        return self._fallback

    @abstractmethod
    def complete(self, prompts: Sequence[str], *, seed: int, sample: bool) -> list[str]:
        """One completion per prompt (the prompt is the user turn of a chat when chat is possible)."""

    def rewrite(self, instructions: Sequence[str], *, n: int, prompt: str, seed: int) -> list[list[Generation]]:
        pname = prompt_name(prompt, "custom:rewrite")
        prompts = [fill(prompt, x) for x in instructions]
        out: list[list[Generation]] = [[] for _ in instructions]
        for k in range(n):
            todo = list(range(len(instructions)))
            for attempt in range(self.max_tries):
                texts = self.complete([prompts[i] for i in todo], seed=seed + 1000 * k + 100_003 * attempt,
                                      sample=True)
                retry = []
                for i, raw in zip(todo, texts):
                    text = clean_rewrite(raw)
                    taken = {g.text for g in out[i]} | {instructions[i].strip()}
                    if text and text not in taken:
                        out[i].append(Generation(text, self.name, pname))
                    else:
                        retry.append(i)
                todo = retry
                if not todo:
                    break
            for i in todo:  # still nothing usable: a deterministic paraphrase, marked as such
                used = {g.text for g in out[i]}
                para = next(g for g in self.fallback.paraphrases(instructions[i], len(used) + 1, seed)
                            if g.text not in used)
                out[i].append(Generation(para.text, para.generator, para.prompt,
                                         note=f"fallback: {self.name} gave an empty or repeated rewrite"))
        return out

    def negative(self, instructions: Sequence[str], *, prompt: str, seed: int) -> list[Generation]:
        pname = prompt_name(prompt, "custom:negative")
        texts = self.complete([fill(prompt, x) for x in instructions], seed=seed, sample=self.sample_negatives)
        out = []
        for x, raw in zip(instructions, texts):
            text = clean_response(raw)
            if text:
                out.append(Generation(text, self.name, pname))
            else:
                ref = self.fallback.refusal(x, seed)
                out.append(Generation(ref.text, ref.generator, ref.prompt,
                                      note=f"fallback: {self.name} gave an empty response"))
        return out


class ModelGenerator(PromptedGenerator):
    """Generate with an HF causal LM (batched, left-padded)."""

    def __init__(self, model: Any, tokenizer: Any, *, name: str = "model", max_new_tokens: int = 64,
                 temperature: float = 0.8, top_p: float = 0.95, batch_size: int = 8,
                 sample_negatives: bool = False, chat: bool | None = None,
                 fallback: TemplateGenerator | None = None, add_special_tokens: bool | None = None):
        super().__init__(sample_negatives=sample_negatives, fallback=fallback)
        self.model, self.tokenizer = model, tokenizer
        self.name = name if name.startswith("model:") else f"model:{name}"
        self.max_new_tokens, self.temperature, self.top_p = max_new_tokens, temperature, top_p
        self.batch_size = batch_size
        self.chat = getattr(tokenizer, "chat_template", None) is not None if chat is None else chat
        # Prompts that are already fully formatted (AltPO's: the encoded prompt's text) say themselves.
        self.add_special_tokens = not self.chat if add_special_tokens is None else add_special_tokens

    def _format(self, prompt: str) -> str:
        if self.chat:
            return self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                      add_generation_prompt=True)
        return prompt

    def complete(self, prompts: Sequence[str], *, seed: int, sample: bool) -> list[str]:
        import torch

        from obliviate.utils import progress

        tok, model = self.tokenizer, self.model
        device = next(model.parameters()).device
        texts = [self._format(p) for p in prompts]
        out: list[str] = []
        batches = [texts[i:i + self.batch_size] for i in range(0, len(texts), self.batch_size)]
        old_side = tok.padding_side
        tok.padding_side = "left"  # generation continues every row from its last real token
        was_training = model.training
        model.eval()
        try:
            # fork_rng: seeding here must not change the caller's random stream (e.g. training).
            cuda = [device.index or 0] if device.type == "cuda" else []
            with torch.random.fork_rng(devices=cuda), torch.no_grad():
                for b, batch in enumerate(progress(batches, desc=f"{self.name} generating")):
                    torch.manual_seed(seed + b)
                    enc = tok(batch, return_tensors="pt", padding=True, add_special_tokens=self.add_special_tokens).to(device)
                    gen = model.generate(**enc, generation_config=self._generation_config(sample))
                    new = gen[:, enc["input_ids"].shape[1]:]
                    out.extend(tok.batch_decode(new, skip_special_tokens=True))
        finally:
            tok.padding_side = old_side
            model.train(was_training)
        return out

    def _generation_config(self, sample: bool) -> Any:
        """A complete, explicit config: nothing inherited from the checkpoint's generation_config."""
        from transformers import GenerationConfig

        tok = self.tokenizer
        eos = getattr(self.model.generation_config, "eos_token_id", None) or tok.eos_token_id
        common = {"max_new_tokens": self.max_new_tokens, "pad_token_id": tok.pad_token_id, "eos_token_id": eos}
        if sample:
            return GenerationConfig(do_sample=True, temperature=self.temperature, top_p=self.top_p, top_k=0, **common)
        return GenerationConfig(do_sample=False, num_beams=1, **common)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "max_new_tokens": self.max_new_tokens, "temperature": self.temperature,
                "top_p": self.top_p, "sample_negatives": self.sample_negatives, "chat": self.chat}


class OpenAIGenerator(PromptedGenerator):
    """Any OpenAI-compatible ``/v1/chat/completions`` endpoint, through the ``openai`` client."""

    def __init__(self, base_url: str, model: str, *, api_key_env: str = "OPENAI_API_KEY",
                 max_new_tokens: int = 64, temperature: float = 0.8, top_p: float = 0.95,
                 concurrency: int = 4, timeout_s: float = 120.0, sample_negatives: bool = False,
                 fallback: TemplateGenerator | None = None):
        super().__init__(sample_negatives=sample_negatives, fallback=fallback)
        if not base_url or not model:
            raise ObliviateError("the openai generator needs a base URL and a model name "
                                 "(--base-url http://host:port/v1 --gen-model NAME)")
        # The URL as given reaches the server; only its credential-free form is shown or written.
        self._url, self.model, self.api_key_env = base_url.rstrip("/"), model, api_key_env
        self.base_url = strip_credentials(self._url)
        self.name = f"openai:{model}@{self.base_url}"
        self.max_new_tokens, self.temperature, self.top_p = max_new_tokens, temperature, top_p
        self.concurrency, self.timeout_s = max(1, concurrency), timeout_s
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            try:
                from openai import OpenAI
            except ImportError as e:  # pragma: no cover - openai is a dependency
                raise ObliviateError("the openai generator needs the openai package: pip install openai") from e
            # Local servers (vLLM, llama.cpp) accept any key, but the client insists on one.
            key = os.environ.get(self.api_key_env) or "not-needed"
            self._client = OpenAI(base_url=self._url, api_key=key, timeout=self.timeout_s, max_retries=2)
        return self._client

    def _one(self, prompt: str, seed: int, sample: bool) -> str:
        import openai

        try:
            resp = self.client.chat.completions.create(
                model=self.model, messages=[{"role": "user", "content": prompt}],
                max_tokens=self.max_new_tokens, temperature=self.temperature if sample else 0.0,
                top_p=self.top_p if sample else 1.0, seed=seed)
        # The server's response body is never echoed: it may repeat the key or the request.
        except openai.AuthenticationError as e:
            raise ObliviateError(f"{self.base_url}: authentication failed (HTTP {e.status_code}); put the API key "
                                 f"in ${self.api_key_env}") from None
        except openai.APIConnectionError:
            raise ObliviateError(f"{self.base_url}: cannot reach the OpenAI-compatible endpoint") from None
        except openai.APIStatusError as e:
            raise ObliviateError(f"{self.base_url}: the endpoint answered HTTP {e.status_code}") from None
        if not resp.choices:
            return ""
        return resp.choices[0].message.content or ""

    def complete(self, prompts: Sequence[str], *, seed: int, sample: bool) -> list[str]:
        from concurrent.futures import ThreadPoolExecutor

        from obliviate.utils import progress

        with ThreadPoolExecutor(self.concurrency) as pool:
            futures = [pool.submit(self._one, p, seed, sample) for p in prompts]
            return [f.result() for f in progress(futures, desc=f"{self.model} via API", total=len(futures))]

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "max_new_tokens": self.max_new_tokens, "temperature": self.temperature,
                "top_p": self.top_p, "sample_negatives": self.sample_negatives}


# --------------------------------------------------------------------------- factory

def build_generator(cfg: GeneratorConfig, *, model: Any = None, tokenizer: Any = None,
                    model_name: str = "model") -> Generator:
    """The generator ``cfg`` asks for. ``model``/``tokenizer`` = the model being unlearned."""
    fallback = TemplateGenerator.from_file(cfg.refusals)
    if cfg.kind == "template":
        return fallback
    if cfg.kind == "model":
        if cfg.model is not None:
            from obliviate.models import load_model

            model, tokenizer = load_model(cfg.model)
            model_name = cfg.model
        if model is None or tokenizer is None:
            raise ObliviateError("the model generator needs a model: pass generator.model=SPEC "
                                 "(or run it inside a ULMR run, which uses the model being unlearned)")
        return ModelGenerator(model, tokenizer, name=model_name, max_new_tokens=cfg.max_new_tokens,
                              temperature=cfg.temperature, top_p=cfg.top_p, batch_size=cfg.batch_size,
                              sample_negatives=cfg.sample_negatives, fallback=fallback)
    if cfg.kind == "openai":
        return OpenAIGenerator(cfg.base_url or "", cfg.model or "", api_key_env=cfg.api_key_env,
                               max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
                               concurrency=cfg.concurrency, timeout_s=cfg.timeout_s,
                               sample_negatives=cfg.sample_negatives, fallback=fallback)
    raise ObliviateError(f"unknown generator kind {cfg.kind!r}; choose template, model or openai")


def generator_config_key(cfg: GeneratorConfig) -> dict[str, Any]:
    """The fields of a config that change what gets generated (for the cache fingerprint)."""
    key = asdict(cfg)
    for irrelevant in ("batch_size", "concurrency", "timeout_s", "api_key_env"):
        key.pop(irrelevant)
    if key.get("base_url"):
        key["base_url"] = strip_credentials(key["base_url"])  # the key is written to restructured.meta.json
    return key


def strip_credentials(url: str) -> str:
    """``http://user:PASS@host:8000/v1`` -> ``http://host:8000/v1``: the form that may be logged or saved."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
