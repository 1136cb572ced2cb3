"""An optimizer update rule for small NumPy models; the search starts from AdamW.

Only the code between the EVOLVE-BLOCK markers is evolved. ``update`` receives the flat
parameter vector, its gradient (both as lists of floats), the state dict it returned on the
previous step (``{}`` on the first step; store only numbers and lists of numbers in it) and
the problem's base learning rate, and returns ``(new_params, new_state)``. The same rule is
used, with a fresh state, on every problem.
"""

import numpy as np

# EVOLVE-BLOCK-START
BETA1 = 0.9
BETA2 = 0.999
EPS = 1e-8
WEIGHT_DECAY = 0.01


def update(params, grads, state, lr):
    """One AdamW step (Loshchilov & Hutter): Adam moments, bias correction, decoupled decay."""
    p = np.asarray(params, dtype=float)
    g = np.asarray(grads, dtype=float)
    t = int(state.get("t", 0)) + 1
    m = np.asarray(state.get("m", np.zeros_like(p)), dtype=float)
    v = np.asarray(state.get("v", np.zeros_like(p)), dtype=float)
    m = BETA1 * m + (1.0 - BETA1) * g
    v = BETA2 * v + (1.0 - BETA2) * g * g
    m_hat = m / (1.0 - BETA1**t)
    v_hat = v / (1.0 - BETA2**t)
    p = p - lr * (m_hat / (np.sqrt(v_hat) + EPS) + WEIGHT_DECAY * p)
    return p, {"t": t, "m": m, "v": v}
# EVOLVE-BLOCK-END
