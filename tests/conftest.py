"""Shared fixtures: preset chips and models, small systems."""

from __future__ import annotations

import pytest

from hardware import load_system
from workloads import load_model


@pytest.fixture
def h100():
    return load_system("h100-sxm", 1)


@pytest.fixture
def llama7b():
    return load_model("llama-2-7b")


@pytest.fixture
def llama70b():
    return load_model("llama-2-70b")
