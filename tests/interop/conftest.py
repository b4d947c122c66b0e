"""Shared fixtures of the interop tests."""

from __future__ import annotations

import importlib.util

import pytest


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small torch models: threads only contend on a shared machine (restored afterwards)."""
    if importlib.util.find_spec("torch") is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
