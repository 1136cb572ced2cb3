"""Hyper-parameter task: a one-hidden-layer numpy MLP; Params are its training settings.

Each example is a cross-validation fold; the metric is that fold's validation MSE (lower is
better). Initial settings are deliberately poor (tiny learning rate, few epochs), so the
numeric optimizer has a real, measurable improvement to find — offline, in seconds.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from agentopt.trace import Module, Param, trace

N_FOLDS = 3


@lru_cache(maxsize=1)
def _data() -> tuple[np.ndarray, np.ndarray]:
    table = np.loadtxt(Path(__file__).with_name("data.csv"), delimiter=",", skiprows=1)
    return table[:, :-1], table[:, -1]


class MLPSettings(Module):
    def __init__(self) -> None:
        self.learning_rate = Param(1e-4, bounds=(1e-4, 0.5), log=True, description="gradient step size")
        self.l2 = Param(0.05, bounds=(1e-6, 0.1), log=True, description="weight decay")
        self.hidden = Param(4, choices=[4, 8, 16, 32, 64], description="hidden units")
        self.epochs = Param(20, bounds=(10, 400), description="full-batch gradient steps")


def build() -> MLPSettings:
    return MLPSettings()


@trace
def train_and_validate(fold: int, lr: float, l2: float, hidden: int, epochs: int) -> float:
    """Train on the other folds with full-batch gradient descent; return validation MSE."""
    x, y = _data()
    idx = np.arange(len(y))
    val = idx % N_FOLDS == fold
    xt, yt, xv, yv = x[~val], y[~val], x[val], y[val]
    rng = np.random.default_rng(fold)
    w1 = rng.normal(scale=1 / np.sqrt(x.shape[1]), size=(x.shape[1], hidden))
    b1 = np.zeros(hidden)
    w2 = rng.normal(scale=1 / np.sqrt(hidden), size=hidden)
    b2 = 0.0
    for _ in range(int(epochs)):
        h = np.tanh(xt @ w1 + b1)
        err = h @ w2 + b2 - yt
        g_out = 2 * err / len(yt)
        g_w2 = h.T @ g_out + l2 * w2
        g_h = np.outer(g_out, w2) * (1 - h**2)
        g_w1 = xt.T @ g_h + l2 * w1
        w1 -= lr * g_w1
        b1 -= lr * g_h.sum(axis=0)
        w2 -= lr * g_w2
        b2 -= lr * g_out.sum()
        if not np.isfinite(w1).all():
            raise FloatingPointError("training diverged (learning rate too high?)")
    pred = np.tanh(xv @ w1 + b1) @ w2 + b2
    return float(np.mean((pred - yv) ** 2))


def run(module: MLPSettings, example: dict):
    return train_and_validate(example["fold"], module.learning_rate, module.l2, module.hidden, module.epochs)


def metric(mse: float, example: dict) -> dict:
    return {"score": mse, "text": f"fold {example['fold']}: validation MSE {mse:.4f}"}
