"""Typed configs from YAML + overrides."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from obliviate.config import config_to_yaml, load_config
from obliviate.errors import ObliviateError


@dataclass
class Inner:
    alpha: float = 0.5
    name: str = "icu"


@dataclass
class Outer:
    lr: float = 5e-6
    epochs: int = 10
    inner: Inner = field(default_factory=Inner)


def test_defaults_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lr: 1.0e-5\ninner:\n  alpha: 0.25\n")
    cfg = load_config(Outer, path, ["epochs=3", "inner.name=npo"])
    assert cfg == Outer(lr=1e-5, epochs=3, inner=Inner(alpha=0.25, name="npo"))
    assert "alpha: 0.25" in config_to_yaml(cfg)


@pytest.mark.parametrize(("overrides", "message"), [
    (["epochs=many"], "epochs"),
    (["nonsense=1"], "nonsense"),
    (["lr"], "not of the form key=value"),
])
def test_config_errors_name_the_key(overrides, message):
    with pytest.raises(ObliviateError, match=message):
        load_config(Outer, None, overrides)
