"""causalrm.devices.resolve_device: the one meaning of "auto" (cuda, else cpu; mps only where the caller allows it)."""

from __future__ import annotations

import pytest
import torch

from causalrm.devices import resolve_device
from causalrm.errors import InputError


def _machine(monkeypatch, *, cuda: bool, mps: bool, n_cuda: int = 1) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: n_cuda if cuda else 0)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)


@pytest.mark.parametrize("auto", ["auto", None, "", " auto "])
def test_auto_prefers_cuda_then_cpu(monkeypatch, auto):
    _machine(monkeypatch, cuda=True, mps=True)
    assert resolve_device(auto) == torch.device("cuda")
    _machine(monkeypatch, cuda=False, mps=True)
    assert resolve_device(auto) == torch.device("cpu")  # training keeps float64 on the device: never mps by "auto"
    assert resolve_device(auto, auto_mps=True) == torch.device("mps")
    _machine(monkeypatch, cuda=False, mps=False)
    assert resolve_device(auto, auto_mps=True) == torch.device("cpu")


def test_named_devices_are_checked(monkeypatch):
    _machine(monkeypatch, cuda=False, mps=False)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(InputError, match="CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(InputError, match="mps is not available"):
        resolve_device("mps")
    with pytest.raises(InputError, match="is not valid; use auto, cpu, cuda"):
        resolve_device("gpu0")
    _machine(monkeypatch, cuda=True, mps=False, n_cuda=2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(InputError, match="has 2 CUDA device"):
        resolve_device("cuda:2")


def test_every_caller_uses_the_one_function(monkeypatch):
    """The embedder and the propensity MLP agree with resolve_device."""
    from causalrm.embeddings import embedder as embeddings

    _machine(monkeypatch, cuda=False, mps=True)
    assert embeddings._pick_device("auto") == "mps"  # the embedder's forward pass may run on mps
    with pytest.raises(InputError, match="is not valid"):
        embeddings.Embedder(device="gpu0")
