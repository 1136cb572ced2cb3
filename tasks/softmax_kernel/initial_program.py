"""Row-wise softmax kernel to speed up. Only the EVOLVE-BLOCK is changed by agentopt.

The harness below the block is fixed: the evaluator hands it fresh inputs in memory-mapped
files, times the whole call from its own process, and checks the output itself.
"""

import numpy as np


# EVOLVE-BLOCK-START
def softmax(x):
    """Numerically stable softmax over the last axis of a 2-D float64 array."""
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        row = x[i]
        e = np.exp(row - row.max())
        out[i] = e / e.sum()
    return out
# EVOLVE-BLOCK-END


def _views(in_path, out_path, shape):
    x = np.memmap(in_path, dtype=np.float64, mode="r", shape=tuple(shape))
    out = np.memmap(out_path, dtype=np.float64, mode="r+", shape=tuple(shape))
    return x, out


def run_kernel(in_path, out_path, shape):
    """Harness: run the kernel on the input file and write the output file."""
    x, out = _views(in_path, out_path, shape)
    result = softmax(np.array(x))
    out[...] = result
    return None


def run_noop(in_path, out_path, shape):
    """Harness without the kernel: the evaluator subtracts its time (call + mapping overhead)."""
    _views(in_path, out_path, shape)
    return None
