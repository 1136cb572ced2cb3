"""Reference softmax kernel (Numba CUDA): one block per row, three passes over global memory.

It is the straightforward way to write the kernel: a block of THREADS threads walks its row
three times (max, sum of exponentials, normalise) and reduces through shared memory. The
evaluator times it through the same harness as the candidate when no library baseline (CuPy)
is installed, and uses it as the starting point of the task.
"""

import math

from numba import cuda, float32

THREADS = 128


@cuda.jit
def softmax_rows(x, out):
    row = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    cols = x.shape[1]
    shared = cuda.shared.array(THREADS, float32)

    local = -math.inf
    for j in range(tid, cols, THREADS):
        local = max(local, x[row, j])
    shared[tid] = local
    cuda.syncthreads()
    step = THREADS // 2
    while step > 0:
        if tid < step:
            shared[tid] = max(shared[tid], shared[tid + step])
        cuda.syncthreads()
        step //= 2
    row_max = shared[0]
    cuda.syncthreads()

    local = 0.0
    for j in range(tid, cols, THREADS):
        local += math.exp(x[row, j] - row_max)
    shared[tid] = local
    cuda.syncthreads()
    step = THREADS // 2
    while step > 0:
        if tid < step:
            shared[tid] += shared[tid + step]
        cuda.syncthreads()
        step //= 2
    total = shared[0]

    for j in range(tid, cols, THREADS):
        out[row, j] = math.exp(x[row, j] - row_max) / total


def launch(x, out):
    """Enqueue the kernel on device arrays ``x`` and ``out`` (float32, rows x cols)."""
    softmax_rows[x.shape[0], THREADS](x, out)
