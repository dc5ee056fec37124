"""Per-token log-likelihoods from one teacher-forced forward pass per batch.

The building block of TOFU's probabilities and truth ratio, the membership-inference scores
and perplexity: ``log p(x_t | x_<t)`` for the scored positions of each example (``region``
as in ``memorization.py``; TOFU and MIA on QA score the completion, i.e. the answer + eos).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from obliviate.data.encode import Encoded, collate
from obliviate.metrics._model import evaluating, model_device, resolve_pad_id
from obliviate.metrics.memorization import Region, ma_positions
from obliviate.utils import progress


@dataclass
class TokenLogProbs:
    logprobs: torch.Tensor  # [n] float64, log p(x_t | x_<t) at the scored positions
    mu: torch.Tensor | None = None  # [n] E_{v~p}[log p(v)] under the model's next-token distribution
    sigma: torch.Tensor | None = None  # [n] std of log p(v) under the same distribution (Min-K%++)

    @property
    def nll_sum(self) -> float:
        return -float(self.logprobs.sum())

    @property
    def mean_nll(self) -> float:
        return -float(self.logprobs.mean())


def token_logprobs(model, examples: Sequence[Encoded], *, region: Region = "completion", batch_size: int = 16,
                   pad_id: int | None = None, distribution_stats: bool = False,
                   show_progress: bool = True) -> list[TokenLogProbs]:
    """Scored-position log-probs of every example, in input order.

    ``distribution_stats`` also returns, per position, the mean and standard deviation of
    ``log p(v)`` over the vocabulary under p itself (Min-K%++'s mu and sigma); it needs the
    full log-softmax, so it costs memory ``batch x T x vocab``.
    """
    examples = list(examples)
    spans = [ma_positions(e, region, k) for k, e in enumerate(examples)]
    pad = resolve_pad_id(model, pad_id)
    device = model_device(model)
    out: list[TokenLogProbs | None] = [None] * len(examples)
    order = sorted(range(len(examples)), key=lambda k: len(examples[k].ids))
    starts = range(0, len(order), batch_size)
    it = progress(starts, desc="log-probs", total=math.ceil(len(order) / batch_size)) if show_progress else starts
    with evaluating(model):
        for s in it:
            chunk = order[s:s + batch_size]
            batch = collate([examples[k] for k in chunk], pad, padding_side="right").to(device)
            logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                           position_ids=batch.position_ids).logits[:, :-1].float()
            targets = batch.input_ids[:, 1:]
            if distribution_stats:
                logp = F.log_softmax(logits, dim=-1)
                picked = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
                p = logp.exp()
                mu = (p * logp).sum(-1)
                var = (p * logp.square()).sum(-1) - mu.square()
                sigma = var.clamp(min=0).sqrt()
                del logp, p
            else:
                picked = -F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
            del logits
            for row, k in enumerate(chunk):
                sl = slice(spans[k].start - 1, spans[k].stop - 1)
                item = TokenLogProbs(picked[row, sl].double().cpu())
                if distribution_stats:
                    item.mu, item.sigma = mu[row, sl].double().cpu(), sigma[row, sl].double().cpu()
                out[k] = item
    return out  # type: ignore[return-value]


def token_weighted_nll(scores: Sequence[TokenLogProbs]) -> float:
    """Mean NLL over all scored tokens of all examples (each token counts once): the one
    perplexity obliviate reports is ``perplexity_of(token_weighted_nll(...))``."""
    return math.fsum(t.nll_sum for t in scores) / max(sum(len(t.logprobs) for t in scores), 1)


def perplexity_of(nll: float) -> float:
    """exp(NLL), capped at exp(50) so a destroyed model prints a large number, not inf."""
    return math.exp(min(nll, 50.0))


def completion_nll(model, examples: Sequence[Encoded], *, batch_size: int = 16,
                   pad_id: int | None = None) -> list[float]:
    """Mean NLL per token of each example's completion (TOFU's ``avg_gt_loss``; the eos counts)."""
    return [t.mean_nll for t in token_logprobs(model, examples, region="completion", batch_size=batch_size,
                                               pad_id=pad_id)]
