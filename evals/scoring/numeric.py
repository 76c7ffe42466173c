"""Numerics shared by the scoring modules."""

from __future__ import annotations

import numpy as np


def sigmoid(z: np.ndarray) -> np.ndarray:
    """σ(z) computed as exp(−log(1 + e^−z)), which does not overflow for large negative z."""
    return np.exp(-np.logaddexp(0.0, -z))
