"""Evaluator for optimizer_discovery: evolve ``update(params, grads, state, lr)`` from AdamW.

Guest side: stdlib + numpy only; the candidate runs in its own process
(``agentopt_guest.CandidateProcess``) and sees only the parameters, the gradient, its own
state and the learning rate. Everything that decides the score stays here: the problems,
their data, the loss and gradient, and the reference optimizers. A candidate therefore
cannot report its own loss; it can only move the parameters.

Problems (seeded, full-batch, deterministic):

* ``logreg``  - logistic regression, 8 features, noisy labels (cross-entropy)
* ``mlp``     - a 2-16-1 tanh network regressing sin(2 x0) cos(x1) (mean squared error)
* ``quad``    - an ill-conditioned quadratic, eigenvalues 1 ... 1000, rotated
* ``softmax`` - 3-class softmax regression; HELD BACK: only the final stage uses it

Funnel of growing size (the task's cascade): ``evaluate_stage1`` (64 samples / 8-dim
quadratic, 25 steps), ``evaluate_stage2`` (256 / 16, 60 steps), ``evaluate`` (512 / 32,
150 steps, plus the held-back problem).

Score: the mean over the stage's problems of ``log10(AdamW loss / candidate loss)``, each
clipped to [-2, 2] (metric ``stage_score``): 0 for AdamW itself, +1 for a ten times lower
final training loss on every problem. The proxy stages shift it by -10 (stage 1) and -5
(stage 2), so a candidate the funnel stopped never outranks a fully evaluated one. Metrics and feedback compare the candidate with AdamW and with SGD+momentum
(each with the problem's own learning rate) on every problem.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from agentopt_guest import CandidateError, CandidateProcess

CLIP = 2.0  # decades; one problem cannot dominate the mean
# A candidate stopped by the funnel keeps its last stage's score; shifting the proxy stages
# below every full-evaluation score ([-2, 2]) keeps a candidate that looked good on a small
# proxy from outranking one that passed the full evaluation. Ranks within a stage (what the
# funnel compares) are unchanged.
STAGE_OFFSET = {1: -10.0, 2: -5.0, 3: 0.0}
LOSS_FLOOR = 1e-12
CALL_TIMEOUT_S = 5.0
IMPORT_TIMEOUT_S = 20.0
SGD_MOMENTUM = 0.9

Loss = Callable[[np.ndarray], tuple[float, np.ndarray]]


class InvalidProgram(Exception):
    """The candidate broke the contract; the message is shown to the user and the LLM."""


# ---------------------------------------------------------------------------- problems


def _logreg(n: int, seed: int) -> tuple[Loss, np.ndarray]:
    rng = np.random.default_rng(seed)
    d = 8
    x = rng.normal(size=(n, d))
    w_true = rng.normal(size=d)
    y = (x @ w_true + 0.7 * rng.normal(size=n) > 0).astype(float)
    xb = np.hstack([x, np.ones((n, 1))])

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = xb @ w
        value = float(np.mean(np.logaddexp(0.0, z) - y * z))
        prob = 0.5 * (1.0 + np.tanh(0.5 * z))  # a sigmoid that never overflows
        return value, xb.T @ (prob - y) / n

    return loss, np.zeros(d + 1)


def _mlp(n: int, seed: int) -> tuple[Loss, np.ndarray]:
    rng = np.random.default_rng(seed)
    hidden = 16
    x = rng.uniform(-2.0, 2.0, size=(n, 2))
    y = np.sin(2.0 * x[:, 0]) * np.cos(x[:, 1])
    shapes = [(hidden, 2), (hidden,), (hidden,), (1,)]
    sizes = [int(np.prod(s)) for s in shapes]

    def unpack(w: np.ndarray) -> list[np.ndarray]:
        out, at = [], 0
        for shape, size in zip(shapes, sizes, strict=True):
            out.append(w[at : at + size].reshape(shape))
            at += size
        return out

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        w1, b1, w2, b2 = unpack(w)
        h = np.tanh(x @ w1.T + b1)
        err = h @ w2 + b2[0] - y
        value = float(0.5 * np.mean(err * err))
        d_out = err / n
        d_h = np.outer(d_out, w2) * (1.0 - h * h)
        grads = [d_h.T @ x, d_h.sum(axis=0), h.T @ d_out, np.array([d_out.sum()])]
        return value, np.concatenate([g.ravel() for g in grads])

    init = [rng.normal(0.0, 0.7, size=shapes[0]), np.zeros(hidden), rng.normal(0.0, 0.25, size=hidden), np.zeros(1)]
    return loss, np.concatenate([a.ravel() for a in init])


def _quad(n: int, seed: int) -> tuple[Loss, np.ndarray]:
    rng = np.random.default_rng(seed)
    d = max(4, n // 16)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    a = (q * np.logspace(0.0, 3.0, d)) @ q.T
    target = rng.normal(size=d)

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        diff = w - target
        grad = a @ diff
        return float(0.5 * diff @ grad), grad

    return loss, np.zeros(d)


def _softmax(n: int, seed: int) -> tuple[Loss, np.ndarray]:
    rng = np.random.default_rng(seed)
    d, k = 5, 3
    x = np.hstack([rng.normal(size=(n, d)), np.ones((n, 1))])
    w_true = rng.normal(size=(d + 1, k))
    labels = np.argmax(x @ w_true + 0.8 * rng.normal(size=(n, k)), axis=1)
    onehot = np.eye(k)[labels]

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = x @ w.reshape(d + 1, k)
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        value = float(-np.mean(np.sum(onehot * logp, axis=1)))
        return value, (x.T @ (np.exp(logp) - onehot) / n).ravel()

    return loss, np.zeros((d + 1) * k)


# name -> (builder, base learning rate for the candidate and AdamW, SGD+momentum rate)
PROBLEMS: dict[str, tuple[Callable[[int, int], tuple[Loss, np.ndarray]], float, float]] = {
    "logreg": (_logreg, 0.05, 0.5),
    "mlp": (_mlp, 0.01, 0.1),
    "quad": (_quad, 0.05, 1e-3),
    "softmax": (_softmax, 0.05, 0.5),
}
STAGES = {
    1: {"n": 64, "steps": 25, "problems": ("logreg", "mlp", "quad")},
    2: {"n": 256, "steps": 60, "problems": ("logreg", "mlp", "quad")},
    3: {"n": 512, "steps": 150, "problems": ("logreg", "mlp", "quad", "softmax")},
}
HELD_BACK = ("softmax",)


# ---------------------------------------------------------------------------- optimizers


def adamw_update(params: np.ndarray, grads: np.ndarray, state: dict[str, Any], lr: float) -> tuple[np.ndarray, dict]:
    """The reference AdamW: the same arithmetic as the initial program, so it scores exactly 0."""
    t = int(state.get("t", 0)) + 1
    m = np.asarray(state.get("m", np.zeros_like(params)), dtype=float)
    v = np.asarray(state.get("v", np.zeros_like(params)), dtype=float)
    m = 0.9 * m + (1.0 - 0.9) * grads
    v = 0.999 * v + (1.0 - 0.999) * grads * grads
    m_hat = m / (1.0 - 0.9**t)
    v_hat = v / (1.0 - 0.999**t)
    return params - lr * (m_hat / (np.sqrt(v_hat) + 1e-8) + 0.01 * params), {"t": t, "m": m, "v": v}


def sgdm_update(params: np.ndarray, grads: np.ndarray, state: dict[str, Any], lr: float) -> tuple[np.ndarray, dict]:
    """Heavy-ball SGD with momentum 0.9 (its learning rate is the problem's SGD rate)."""
    buf = SGD_MOMENTUM * np.asarray(state.get("buf", np.zeros_like(params)), dtype=float) + grads
    return params - lr * buf, {"buf": buf}


def train(loss: Loss, init: np.ndarray, steps: int, lr: float, step_fn: Callable[..., Any]) -> float:
    """Final full-batch training loss after ``steps`` updates (inf when it diverged)."""
    params, state = init.copy(), {}
    with np.errstate(all="ignore"):  # a diverging rule overflows; that is a result, not a warning
        for _ in range(steps):
            _, grads = loss(params)
            params, state = step_fn(params, grads, state, lr)
            if not np.all(np.isfinite(params)):
                return math.inf
        value = loss(params)[0]
    return value if math.isfinite(value) else math.inf


def _candidate_step(proc: CandidateProcess, size: int) -> Callable[..., Any]:
    """A step function that calls the candidate's ``update`` in its process and checks the reply."""

    def step(params: np.ndarray, grads: np.ndarray, state: Any, lr: float) -> tuple[np.ndarray, Any]:
        try:
            reply = proc.call("update", params, grads, state, lr, timeout=CALL_TIMEOUT_S)
        except CandidateError as err:
            raise InvalidProgram(f"update() failed: {err}") from None
        except TypeError as err:  # the state it returned cannot cross the process boundary
            raise InvalidProgram(f"update() state must hold only numbers and lists: {err}") from None
        if not isinstance(reply, list) or len(reply) != 2 or not isinstance(reply[1], dict):
            raise InvalidProgram("update() must return (new_params, new_state) with new_state a dict")
        try:
            new = np.asarray(reply[0], dtype=float)
        except (TypeError, ValueError):
            raise InvalidProgram("update() returned non-numeric parameters") from None
        if new.shape != (size,):
            raise InvalidProgram(f"update() returned parameters of shape {new.shape}, expected ({size},)")
        return new, reply[1]

    return step


# ---------------------------------------------------------------------------- scoring


def _ratio(reference: float, candidate: float) -> float:
    """log10(reference / candidate), clipped; a diverged candidate gets the floor."""
    if not math.isfinite(candidate):
        return -CLIP
    if not math.isfinite(reference):
        return CLIP
    return max(-CLIP, min(CLIP, math.log10(max(reference, LOSS_FLOOR) / max(candidate, LOSS_FLOOR))))


def run_stage(program_path: str, stage: int) -> dict[str, Any]:
    """Train every problem of ``stage`` with the candidate, AdamW and SGD+momentum."""
    config = STAGES[stage]
    metrics: dict[str, float] = {}
    lines: list[str] = []
    ratios: list[float] = []
    try:
        with CandidateProcess(program_path, import_timeout=IMPORT_TIMEOUT_S) as proc:
            for name in config["problems"]:
                build, lr, sgd_lr = PROBLEMS[name]
                loss, init = build(config["n"], 1000 * stage + sorted(PROBLEMS).index(name))
                steps = config["steps"]
                cand = train(loss, init, steps, lr, _candidate_step(proc, init.size))
                adamw = train(loss, init, steps, lr, adamw_update)
                sgdm = train(loss, init, steps, sgd_lr, sgdm_update)
                r_adamw, r_sgdm = _ratio(adamw, cand), _ratio(sgdm, cand)
                ratios.append(r_adamw)
                metrics.update({f"loss_{name}": cand if math.isfinite(cand) else 1e300, f"adamw_{name}": adamw,
                                f"sgdm_{name}": sgdm, f"vs_adamw_{name}": r_adamw, f"vs_sgdm_{name}": r_sgdm})
                tag = " [held back]" if name in HELD_BACK else ""
                shown = f"{cand:.4g}" if math.isfinite(cand) else "diverged"
                lines.append(f"  {name}{tag}: candidate {shown}, AdamW {adamw:.4g} ({r_adamw:+.2f} decades), "
                             f"SGD-momentum {sgdm:.4g} ({r_sgdm:+.2f} decades)")
    except InvalidProgram as err:
        return {"score": -CLIP + STAGE_OFFSET[stage], "error": str(err), "feedback": f"invalid program: {err}"}
    except CandidateError as err:  # import failed or the process died outside a call
        return {"score": -CLIP + STAGE_OFFSET[stage], "error": f"candidate failed: {err}",
                "feedback": f"candidate failed: {err}"}
    stage_score = sum(ratios) / len(ratios)
    header = (f"stage {stage} ({config['n']} samples, {config['steps']} steps): {stage_score:+.3f} = mean "
              "log10(AdamW loss / candidate loss), clipped to +-2 per problem")
    if STAGE_OFFSET[stage]:
        header += f" (score {stage_score + STAGE_OFFSET[stage]:+.3f}: proxy stages score {STAGE_OFFSET[stage]:+g})"
    header += ". Final training loss:"
    return {"score": stage_score + STAGE_OFFSET[stage], "stage_score": stage_score, **metrics,
            "feedback": "\n".join([header, *lines])}


def evaluate_stage1(program_path: str) -> dict[str, Any]:
    """Cheap proxy: the three training problems at the smallest size."""
    return run_stage(program_path, 1)


def evaluate_stage2(program_path: str) -> dict[str, Any]:
    """The three training problems, larger and longer."""
    return run_stage(program_path, 2)


def evaluate(program_path: str) -> dict[str, Any]:
    """Full size, plus the held-back softmax-regression problem."""
    return run_stage(program_path, 3)


def fingerprint(program_path: str) -> dict[str, Any]:
    """Three update steps on a fixed probe: rules that move parameters identically share a score."""
    rng = np.random.default_rng(7)
    params, state = rng.normal(size=6), {}
    out = []
    with CandidateProcess(program_path, import_timeout=IMPORT_TIMEOUT_S) as proc:
        step = _candidate_step(proc, params.size)
        for lr in (0.1, 0.01, 0.05):
            params, state = step(params, rng.normal(size=6), state, lr)
            out.append([float(f"{v:.10g}") for v in params])
    return {"outputs": out}
