"""Records from Hugging Face ``datasets``: Parquet files, ``save_to_disk`` folders, hub ids, Dataset objects.

Every form goes through ``datasets`` itself and then through ``io.parse_records``, so field names map
exactly as for JSONL (TOFU's question/answer/perturbed_answer, MUSE's prompt/gt, RWKU's query, text).

* ``load_parquet("forget.parquet")``
* ``load_saved_dataset("folder")``: what ``Dataset.save_to_disk`` wrote (a ``DatasetDict``'s split
  is its sub-folder, ``folder/<split>``)
* ``load_hub_dataset("locuslab/TOFU:forget10")``: ``<repo>[:<config>[:<split>]]``, split ``train`` by
  default; ``<repo>`` may be a local clone of the hub repository (a folder); without network a hub
  id fails at once (no retries) and says that the data must be local
* ``records_from_dataset(ds)``: a ``datasets.Dataset`` given in Python
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import datasets
from huggingface_hub import constants as hub_constants

from obliviate.data.io import parse_records
from obliviate.data.records import Record
from obliviate.errors import DataError, ObliviateError

SAVED_MARKERS = ("dataset_info.json", "state.json")  # what Dataset.save_to_disk writes
DICT_MARKER = "dataset_dict.json"  # what DatasetDict.save_to_disk writes


def is_dataset(obj: Any) -> bool:
    """A ``datasets.Dataset`` (or a ``DatasetDict``, which ``records_from_dataset`` asks to pick a split of)."""
    return isinstance(obj, datasets.Dataset | datasets.DatasetDict)


def is_saved_dataset(path: str | os.PathLike) -> bool:
    """A folder that ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk`` wrote."""
    path = Path(path)
    return path.is_dir() and (all((path / m).is_file() for m in SAVED_MARKERS) or (path / DICT_MARKER).is_file())


def records_from_dataset(ds: Any, source: object = "<datasets.Dataset>", *, kind: type | None = None) -> list[Record]:
    """Records of a ``datasets.Dataset`` (rows are parsed like JSONL lines; errors name the row)."""
    if isinstance(ds, datasets.DatasetDict):
        raise DataError(source, f"is a DatasetDict with splits {', '.join(ds)}; pick one split (ds['{next(iter(ds))}'])")
    if not isinstance(ds, datasets.Dataset):
        raise DataError(source, f"expected a datasets.Dataset, got {type(ds).__name__}")
    # Arrow fills a column a row lacks with None: drop those, as CSV's empty cells are dropped.
    rows = ((f"{i} (row {i})", {k: v for k, v in row.items() if v is not None}) for i, row in enumerate(ds))
    return parse_records(rows, path=source, kind=kind)


def load_parquet(path: str | os.PathLike, *, kind: type | None = None) -> list[Record]:
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    # A throw-away cache: datasets would otherwise keep an Arrow copy of the (forget) text in ~/.cache.
    with tempfile.TemporaryDirectory(prefix="obliviate-parquet-") as cache:
        try:
            ds = datasets.Dataset.from_parquet(str(path), cache_dir=cache, keep_in_memory=True)
        except Exception as e:  # pyarrow's ArrowInvalid and friends: not a readable Parquet file
            raise DataError(path, f"not a readable Parquet file ({type(e).__name__}: {str(e).splitlines()[0]})") \
                from None
        return records_from_dataset(ds, path, kind=kind)


def load_saved_dataset(path: str | os.PathLike, *, kind: type | None = None) -> list[Record]:
    path = Path(path)
    if (path / DICT_MARKER).is_file():
        splits = sorted(p.name for p in path.iterdir() if p.is_dir())
        raise DataError(path, f"is a saved DatasetDict with splits {', '.join(splits)}; give one split's folder, "
                              f"e.g. {path / splits[0]}" if splits else "is an empty saved DatasetDict")
    if not is_saved_dataset(path):
        raise DataError(path, "not a folder written by datasets' save_to_disk (no dataset_info.json/state.json)")
    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as e:
        raise DataError(path, f"cannot load the saved dataset ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    return records_from_dataset(ds, path, kind=kind)


def parse_hub_spec(spec: str) -> tuple[str, str | None, str]:
    """``<repo>[:<config>[:<split>]]`` -> (repo, config or None, split); split defaults to ``train``."""
    repo, config, split = [*spec.split(":"), None, None][:3]
    if not repo or spec.count(":") > 2:
        raise ObliviateError(f"hf:{spec}: expected hf:<repo>[:<config>[:<split>]], e.g. hf:locuslab/TOFU:forget10")
    return repo, config or None, split or "train"


def _hub_reachable(timeout: float = 3.0) -> bool:
    """One TCP connection to the hub's host: huggingface_hub would otherwise retry for ~25 s when offline."""
    url = urlparse(hub_constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname or "", url.port or (443 if url.scheme == "https" else 80)),
                                      timeout=timeout):
            return True
    except OSError:
        return False


def load_hub_dataset(spec: str, *, kind: type | None = None) -> list[Record]:
    """A hub dataset through ``datasets.load_dataset`` (a cached copy is used under ``HF_HUB_OFFLINE=1``)."""
    repo, config, split = parse_hub_spec(spec)
    local = (f"the data must be local: where there is network, save it with datasets.load_dataset({repo!r}"
             f"{f', {config!r}' if config else ''}, split={split!r}).save_to_disk(DIR) and pass DIR")
    offline = hub_constants.HF_HUB_OFFLINE
    if not offline and not _hub_reachable():
        raise ObliviateError(f"hf:{spec}: the Hugging Face hub ({hub_constants.ENDPOINT}) cannot be reached; {local}")
    try:
        ds = datasets.load_dataset(repo, config, split=split)
    except (ConnectionError, OSError) as e:
        why = "offline (HF_HUB_OFFLINE=1) and not in the datasets cache" if offline else str(e).splitlines()[0]
        raise ObliviateError(f"hf:{spec}: {why}; {local}") from None
    except ValueError as e:  # unknown config or split
        raise ObliviateError(f"hf:{spec}: {str(e).splitlines()[0]}") from None
    return records_from_dataset(ds, f"hf:{spec}", kind=kind)
