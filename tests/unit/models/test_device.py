"""``resolve_device``: auto follows the host, and a device the host lacks fails early."""
from __future__ import annotations

import pytest
import torch

from models.sentiment.device import resolve_device


def test_auto_and_cpu(monkeypatch) -> None:
    assert resolve_device("cpu") == "cpu"
    assert resolve_device(" CPU ") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"
    assert resolve_device("cuda:1") == "cuda:1"


def test_cuda_without_cuda_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")


@pytest.mark.parametrize("bad", ["gpu", "tpu", "cuda:x", ""])
def test_unknown_devices_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device(bad)
