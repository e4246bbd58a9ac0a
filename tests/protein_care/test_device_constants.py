"""Constant tensors built once per (key, device) (protein_care.device_constants)."""

import torch

from protein_care import device_constants as dc


def test_a_constant_is_built_once_per_key_and_device_and_holds_its_values():
    built = []

    def build(device):
        built.append(device)
        return torch.arange(3, device=device)

    a = dc.cached_tensor(("test-arange", 3), "cpu", build)
    b = dc.cached_tensor(("test-arange", 3), torch.device("cpu"), build)
    assert a is b and built == [torch.device("cpu")] and a.tolist() == [0, 1, 2]
    c = dc.constant((1.0, 2.0, 3.0, 4.0), None, torch.float64, (2, 2))
    assert c.dtype == torch.float64 and c.shape == (2, 2) and c.device.type == "cpu"
    assert dc.constant((1.0, 2.0, 3.0, 4.0), "cpu", torch.float64, (2, 2)) is c
    assert dc.constant((1.0, 2.0, 3.0, 4.0), "cpu", torch.float32, (2, 2)) is not c  # the dtype is part of the key


def test_the_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(dc, "_CACHE", {})
    for k in range(dc._MAX_ENTRIES + 5):
        dc.cached_tensor(("test-bound", k), "cpu", lambda device, k=k: torch.tensor([k], device=device))
    assert len(dc._CACHE) <= dc._MAX_ENTRIES
    assert dc.cached_tensor(("test-bound", 3), "cpu", lambda device: torch.tensor([-1])).tolist() == [-1]  # rebuilt after clearing
