"""Shared fixtures: small random networks and benches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hil.network import Network
from tests.networks import small_spec

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def small_network() -> Network:
    return Network(small_spec())
