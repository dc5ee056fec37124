"""The SaTML'23 training-data-extraction benchmark (lm-extraction) as records.

Folder layout (ethz-privsec/lm-extraction-benchmark-data plus the forget-set ids of Jang et al.):
``train_preprefix.npy`` [N,100], ``train_prefix.npy`` [N,50], ``train_suffix.npy`` [N,50] (uint16
GPT-2 ids) and ``forget_sets.json`` (``{"sets": {"lm_extraction_128_0": [row ids], ...}}``).

Records keep the exact benchmark ids (``prefix_ids``/``target_ids`` with the GPT-2 fingerprint),
so a GPT-2-vocabulary model (GPT-Neo, GPT-2) sees exactly the benchmark tokens; any other model
gets the decoded text re-tokenized with its own tokenizer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from transformers import PreTrainedTokenizerBase

from obliviate.data.encode import tokenizer_fingerprint
from obliviate.data.records import TextRecord
from obliviate.errors import DataError

FORGET_SET_NAMES = [f"lm_extraction_128_{i}" for i in range(5)]


def load_gpt2_tokenizer(folder: str | Path) -> PreTrainedTokenizerBase:
    """GPT-2 BPE from a folder holding ``vocab.json`` + ``merges.txt`` (no hub access needed)."""
    from transformers import GPT2TokenizerFast

    folder = Path(folder)
    for name in ("vocab.json", "merges.txt"):
        if not (folder / name).is_file():
            raise DataError(folder / name, "GPT-2 tokenizer file not found")
    tok = GPT2TokenizerFast.from_pretrained(str(folder))
    tok.pad_token = tok.eos_token
    return tok


@dataclass
class PileExtraction:
    """The 15,000-row train split. ``rows`` are 200 tokens: pre-prefix [0:100], prefix [100:150], suffix [150:200]."""

    folder: Path
    tokenizer: PreTrainedTokenizerBase

    @classmethod
    def open(cls, folder: str | Path, tokenizer_folder: str | Path | None = None) -> PileExtraction:
        folder = Path(folder)
        if tokenizer_folder is None:
            tokenizer_folder = folder.parent / "gpt2-tokenizer"
        return cls(folder, load_gpt2_tokenizer(tokenizer_folder))

    def _array(self, name: str, width: int) -> np.ndarray:
        path = self.folder / f"train_{name}.npy"
        if not path.is_file():
            raise DataError(path, "benchmark array not found")
        arr = np.load(path)
        if arr.ndim != 2 or arr.shape[1] != width:
            raise DataError(path, f"expected shape [N, {width}], got {list(arr.shape)}")
        return arr

    @cached_property
    def rows(self) -> np.ndarray:
        parts = [self._array("preprefix", 100), self._array("prefix", 50), self._array("suffix", 50)]
        if len({p.shape[0] for p in parts}) != 1:
            raise DataError(self.folder, "train_preprefix/prefix/suffix have different row counts")
        return np.concatenate(parts, axis=1).astype(np.int64)

    @cached_property
    def forget_sets(self) -> dict[str, list[int]]:
        path = self.folder / "forget_sets.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise DataError(path, "file not found") from None
        sets = data.get("sets") if isinstance(data, dict) else None
        if not isinstance(sets, dict):
            raise DataError(path, 'expected {"sets": {name: [row ids]}}', field="sets")
        return {k: [int(i) for i in v] for k, v in sets.items()}

    def forget_ids(self, which: int | str = 0) -> list[int]:
        name = FORGET_SET_NAMES[which] if isinstance(which, int) else which
        if name not in self.forget_sets:
            raise DataError(self.folder / "forget_sets.json", f"no forget set {name!r}; have {sorted(self.forget_sets)}")
        return self.forget_sets[name]

    def records(self, row_ids: list[int], *, context: int = 50) -> list[TextRecord]:
        """One record per row: prefix = the last ``context`` tokens before the suffix (50 = the
        benchmark prefix; 150 = pre-prefix + prefix, as ICU's EL/MA see it), target = the 50-token suffix."""
        if not 0 < context <= 150:
            raise ValueError("context must be in 1..150 tokens")
        fp = tokenizer_fingerprint(self.tokenizer)
        out = []
        for rid in row_ids:
            if not 0 <= rid < len(self.rows):
                raise DataError(self.folder, f"row id {rid} out of range 0..{len(self.rows) - 1}", record=rid)
            row = self.rows[rid]
            prefix_ids, target_ids = row[150 - context:150].tolist(), row[150:200].tolist()
            out.append(TextRecord(
                id=str(rid),
                prefix=self.tokenizer.decode(prefix_ids, clean_up_tokenization_spaces=False),
                target=self.tokenizer.decode(target_ids, clean_up_tokenization_spaces=False),
                prefix_ids=tuple(prefix_ids), target_ids=tuple(target_ids), ids_tokenizer=fp,
                meta={"source": "pile-extraction"},
            ))
        return out

    def forget_records(self, which: int | str = 0, *, context: int = 50) -> list[TextRecord]:
        return self.records(self.forget_ids(which), context=context)

    def pool_ids(self, exclude: list[int]) -> list[int]:
        """All rows outside ``exclude``: ICU's candidate pool for analogous samples."""
        skip = set(exclude)
        return [i for i in range(len(self.rows)) if i not in skip]
