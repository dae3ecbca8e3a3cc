"""Shared by the torch tests: skip cleanly (only these tests) when torch is missing."""

import pytest

torch = pytest.importorskip("torch", reason="python3-torch is not installed: torch tests skipped")
import bnorm.torch as bt  # noqa: E402,F401


def max_abs(a, b):
    return (a - b).abs().max().item() if a.numel() else 0.0


def tolerance(dtype):
    return 2e-5 if dtype == torch.float32 else 1e-10
