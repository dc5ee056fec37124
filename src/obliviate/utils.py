"""Small shared helpers: seeding, devices, progress bars, logging."""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Iterable, Iterator
from typing import TypeVar

import numpy as np
import torch

T = TypeVar("T")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def default_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def progress(iterable: Iterable[T], desc: str = "", total: int | None = None, leave: bool = False) -> Iterator[T]:
    """A tqdm bar on stderr; silent when OBLIVIATE_QUIET=1 (tests, nested bars)."""
    from tqdm.auto import tqdm

    disable = os.environ.get("OBLIVIATE_QUIET") == "1"
    yield from tqdm(iterable, desc=desc, total=total, leave=leave, disable=disable, dynamic_ncols=True)


def setup_logging(verbose: bool = False) -> None:
    from rich.logging import RichHandler

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s",
                        datefmt="[%X]", handlers=[RichHandler(show_path=False, rich_tracebacks=False)],
                        force=True)
    for noisy in ("transformers", "sentence_transformers", "datasets", "urllib3", "filelock", "httpx", "accelerate",
                  "faiss"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
