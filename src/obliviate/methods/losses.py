"""Pure loss pieces shared by the methods: log-likelihoods, KL terms, preference losses.

Conventions: ``labels`` are -100 wherever no loss is wanted (padding, and the prompt when the
loss region is the completion); position t of the logits predicts token t+1. All reductions
are done in float32, whatever the model's dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from obliviate.data.encode import Batch


def forward_logits(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """Logits of ``model`` on a padded batch. Position ids are always passed, so left padding
    is as correct as right padding."""
    out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                position_ids=batch.position_ids, use_cache=False)
    return out.logits


def label_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-prob of each label token and the mask of counted positions, both [B, T-1]."""
    targets = labels[:, 1:]
    mask = targets != -100
    logp = -F.cross_entropy(logits[:, :-1].float().transpose(1, 2), targets.clamp(min=0), reduction="none")
    return logp * mask, mask


def mean_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Token-level mean NLL over the whole batch (Hugging Face's causal-LM loss)."""
    logp, mask = label_logprobs(logits, labels)
    return -logp.sum() / mask.sum().clamp(min=1)


def sequence_logprob(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum of label-token log-probs per sequence, [B] (NPO/DPO's log pi(y|x))."""
    logp, _ = label_logprobs(logits, labels)
    return logp.sum(-1)


def sequence_mean_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sequence NLL divided by its number of label tokens, [B] (SimNPO's length normalisation)."""
    logp, mask = label_logprobs(logits, labels)
    return -logp.sum(-1) / mask.sum(-1).clamp(min=1)


def kl_to_reference(ref_logits: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Forward KL(p_ref || p_theta) per predicted position, averaged over counted positions.

    The true KL: 0 when the model still matches the reference. Positions are those whose
    next token is a label (the same positions the NLL counts), so padding never contributes.
    """
    mask = labels[:, 1:] != -100
    logq = F.log_softmax(logits[:, :-1].float(), dim=-1)
    logp = F.log_softmax(ref_logits[:, :-1].float(), dim=-1)
    kl = F.kl_div(logq, logp, log_target=True, reduction="none").sum(-1)  # [B, T-1]
    return (kl * mask).sum() / mask.sum().clamp(min=1)


def reference_cross_entropy(ref_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """The ICU/LLMU reference code's "KL": mean over *all* B x T positions (padding and the last
    position included, no shift, no mask) of H(p_ref, p_theta) = -sum_v p_ref log(p_theta + 1e-12).

    Its gradient equals that of KL(p_ref || p_theta) at each position, but its value never goes
    to 0 (it includes the reference's entropy). Offered for faithful reproduction only.
    """
    p = F.softmax(ref_logits.float(), dim=-1)
    q = F.softmax(logits.float(), dim=-1)
    return -(p * torch.log(q + 1e-12)).sum(-1).mean()


def kl_term(ref_logits: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor,
            kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(the term to train on, the true KL for the logs): ``kind="kl"`` trains on the true KL,
    otherwise on the reference code's cross-entropy (``reference_cross_entropy``)."""
    true_kl = kl_to_reference(ref_logits, logits, labels)
    return (true_kl if kind == "kl" else reference_cross_entropy(ref_logits, logits)), true_kl


def npo_loss(logp: torch.Tensor, ref_logp: torch.Tensor, beta: float) -> torch.Tensor:
    """Negative Preference Optimization (Zhang et al. 2024, eq. 3), mean over the batch:
    -(2/beta) * log sigmoid(-beta * (log pi_theta(y|x) - log pi_ref(y|x)))."""
    return (-2.0 / beta * F.logsigmoid(-beta * (logp - ref_logp))).mean()


def simnpo_loss(avg_nll: torch.Tensor, beta: float, delta: float) -> torch.Tensor:
    """SimNPO (Fan et al. 2024): reference-free, length-normalised NPO, mean over the batch:
    -(2/beta) * log sigmoid(beta * (avg_nll - delta)), as in open-unlearning (delta=0 matches
    the paper's margin gamma=0)."""
    return (-2.0 / beta * F.logsigmoid(beta * (avg_nll - delta))).mean()


def dpo_loss(win_logp: torch.Tensor, win_ref: torch.Tensor, lose_logp: torch.Tensor, lose_ref: torch.Tensor,
             beta: float) -> torch.Tensor:
    """DPO (Rafailov et al. 2023) with the 2/beta scale of TOFU/open-unlearning, mean over the batch."""
    margin = (win_logp - win_ref) - (lose_logp - lose_ref)
    return (-2.0 / beta * F.logsigmoid(beta * margin)).mean()


def retain_term(model: torch.nn.Module, retain: Batch, kind: str, ref) -> tuple[torch.Tensor, dict[str, float]]:
    """The retain loss most methods add: ``nll`` (learn the retain data) or ``kl`` (stay close to
    the original model on it, needs a reference)."""
    logits = forward_logits(model, retain)
    if kind == "nll":
        loss = mean_nll(logits, retain.labels)
        return loss, {"retain_nll": loss.item()}
    if kind == "kl":
        with torch.no_grad():
            ref_logits = ref.logits(retain)
        loss = kl_to_reference(ref_logits, logits, retain.labels)
        return loss, {"retain_kl": loss.item()}
    raise ValueError(f"unknown retain loss {kind!r}; use 'nll' or 'kl'")


def add_retain(loss: torch.Tensor, logs: dict[str, float], model: torch.nn.Module, retain: Batch | None,
               alpha: float, kind: str, ref, method: str) -> tuple[torch.Tensor, dict[str, float]]:
    """``loss + alpha * retain_term`` (nothing when alpha is 0), with the retain logs added."""
    if not alpha:
        return loss, logs
    if retain is None:
        raise ValueError(f"{method} needs a retain batch (engine bug)")
    term, retain_logs = retain_term(model, retain, kind, ref)
    return loss + alpha * term, {**logs, **retain_logs}


def weighted_ascent(logp: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Token-weighted gradient ascent (WGA, SatImp): -mean over counted tokens of w_t * CE_t =
    mean of w_t * log p_t, with the weights detached (they scale each token's gradient only)."""
    return (weight.detach() * logp * mask).sum() / mask.sum().clamp(min=1)


def wga_loss(logits: torch.Tensor, labels: torch.Tensor, beta: float) -> torch.Tensor:
    """WGA (Wang et al. 2025, G-effect): ascent with weight p_t^beta on each label token."""
    logp, mask = label_logprobs(logits, labels)
    return weighted_ascent(logp, mask, logp.exp() ** beta)


def satimp_loss(logits: torch.Tensor, labels: torch.Tensor, beta1: float, beta2: float) -> torch.Tensor:
    """SatImp (Yang et al. 2025): ascent with weight p_t^beta1 * (1 - p_t)^beta2 on each label token."""
    logp, mask = label_logprobs(logits, labels)
    p = logp.exp()
    return weighted_ascent(logp, mask, p ** beta1 * (1 - p) ** beta2)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over counted positions of H(target, softmax(logits)) = -sum_v target_v log q_v, computed
    as logsumexp(z) - <target, z> (target sums to 1), which materialises no log-softmax."""
    z = logits.float()
    ce = torch.logsumexp(z, dim=-1) - (target * z).sum(-1)
    return (ce * mask).sum() / mask.sum().clamp(min=1)


def undial_loss(logits: torch.Tensor, ref_logits: torch.Tensor, labels: torch.Tensor, beta: float) -> torch.Tensor:
    """UNDIAL (Dong et al. 2024): distil toward the reference whose true-token logit is lowered by
    beta, on the label positions only (the reference code also trains on prompt and padding)."""
    targets, mask = labels[:, 1:], labels[:, 1:] != -100
    true = targets.clamp(min=0).unsqueeze(-1)
    ref = ref_logits[:, :-1].float()
    adjusted = ref.scatter(-1, true, ref.gather(-1, true) - beta)
    return soft_cross_entropy(logits[:, :-1], F.softmax(adjusted, dim=-1), mask)


def ceu_loss(logits: torch.Tensor, labels: torch.Tensor, ignore_first: int) -> torch.Tensor:
    """CE-U (Yang et al. 2025): cross-entropy toward the model's own detached distribution with the
    true token removed (its logit set to -inf), skipping the first ``ignore_first`` label tokens of
    each row."""
    targets, mask = labels[:, 1:], labels[:, 1:] != -100
    mask = mask & (mask.cumsum(-1) > ignore_first)
    shifted = logits[:, :-1].float()
    target = F.softmax(shifted.detach().scatter(-1, targets.clamp(min=0).unsqueeze(-1), float("-inf")), dim=-1)
    return soft_cross_entropy(shifted, target, mask)


def logit_margin_flattening(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """PDU's forget loss: mean over label positions of (max logit - mean logit)^2; 0 when the
    next-token distribution is uniform."""
    mask = labels[:, 1:] != -100
    shifted = logits[:, :-1].float()
    margin = shifted.max(-1).values - shifted.mean(-1)
    return (margin.square() * mask).sum() / mask.sum().clamp(min=1)


def masked_mse(hidden: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """RMU's activation loss: per sequence, the mean over its masked positions of the mean squared
    difference over the hidden dimension; then the mean over sequences (open-unlearning's reduction)."""
    sq = (hidden.float() - target.float()).square().mean(-1)  # [B, T]
    per_row = (sq * mask).sum(-1) / mask.sum(-1).clamp(min=1)
    return per_row.mean()
