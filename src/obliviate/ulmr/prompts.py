"""The two prompts of ULMR (Shi et al., EMNLP 2024 Industry Track), verbatim.

* ``REWRITE_PROMPT`` is Table 1 (*prompt_rewrite*): each forget instruction is rewritten with it
  (twice, §3.1) so the model does not just learn a fixed pattern.
* ``NEGATIVE_PROMPT`` is Table 2 (*negative_prompt*): it asks for a response that refuses or says
  the content is not in the knowledge base; these "negative responses" are the SFT targets.

The wording, the straight double quotes around ``{instruction}`` and the missing space after
``Instruction:`` are copied from the paper. Table 2 prints ``Answer:`` on its own line; we keep
that line break as one ``\\n``. Note that Table 1 speaks of "the given answer" but its template
has no slot for it: we keep it as published (users can pass their own prompt, see
``RestructureConfig``).
"""

from __future__ import annotations

from obliviate.errors import ObliviateError

REWRITE_PROMPT = (
    "Please rewrite the provided instruction to ensure that the given answer can still satisfy the "
    "requirement of your revised instruction. Instruction:\"{instruction}\" Rewrite Instruction:"
)

NEGATIVE_PROMPT = (
    "Please generate a response based on the Instruction indicating that you are unable to answer the "
    "question or that the relevant content is not available in your knowledge base. "
    "Instruction:\"{instruction}\"\nAnswer:"
)

# Names recorded next to every generated line, so a cached file says which prompt made it.
PAPER_PROMPT_NAMES = {REWRITE_PROMPT: "ulmr:prompt_rewrite", NEGATIVE_PROMPT: "ulmr:negative_prompt"}


def fill(prompt: str, instruction: str) -> str:
    """Put ``instruction`` into a prompt's ``{instruction}`` slot.

    ``str.replace`` rather than ``str.format``: user prompts may contain other braces (JSON
    examples), which ``format`` would reject.
    """
    if "{instruction}" not in prompt:
        raise ObliviateError(f"ULMR prompt {prompt[:60]!r}... has no {{instruction}} slot")
    return prompt.replace("{instruction}", instruction)


def prompt_name(prompt: str, default: str) -> str:
    """``ulmr:prompt_rewrite`` / ``ulmr:negative_prompt`` for the paper's prompts, else ``default``."""
    return PAPER_PROMPT_NAMES.get(prompt, default)
