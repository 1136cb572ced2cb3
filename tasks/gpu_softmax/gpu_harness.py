"""Kernel harness: runs INSIDE the candidate's process (started by the evaluator via CandidateProcess).

A CUDA kernel has to be launched from the process that owns the CUDA context, so the launches
and the CUDA-event timing happen here, next to the candidate's code. The evaluator therefore
trusts nothing this module reports on its own:

* inputs arrive fresh for every call through files the evaluator wrote, outputs are zeroed on
  the device before the launches and copied back for the evaluator to check against its own
  reference, so cached or stale answers fail;
* the evaluator times every call from its own process too and rejects GPU times that do not
  fit the wall time it saw (a candidate that patched this module to report fake times, or
  that computes on the CPU, is caught there);
* times below what the device's memory bandwidth allows are flagged by the evaluator.

Stdlib + numpy + numba only (guest side). ``NUMBA_ENABLE_CUDASIM=1`` (set by the evaluator
when no GPU is visible) runs the same code on Numba's CUDA simulator: correct, but slow and
with no meaningful times.
"""

import importlib.util
import os
import sys
import time

import numpy as np

DTYPE = np.float32
_loaded = {}


def _cuda():
    from numba import cuda  # imported lazily: NUMBA_ENABLE_CUDASIM must be set before this

    return cuda


def simulated():
    """True when Numba runs kernels on its CPU simulator (no GPU)."""
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "") == "1"


def device_info():
    """Name, compute capability and theoretical peak memory bandwidth of the current device."""
    if simulated():
        return {"simulator": True, "device": "numba CUDA simulator (CPU)", "peak_gbs": None}
    cuda = _cuda()
    dev = cuda.get_current_device()
    name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
    peak = None
    try:
        clock_khz = int(dev.MEMORY_CLOCK_RATE)
        bus_bits = int(dev.GLOBAL_MEMORY_BUS_WIDTH)
        if clock_khz > 0 and bus_bits > 0:
            peak = 2.0 * clock_khz * 1e3 * (bus_bits / 8) / 1e9  # DDR: two transfers per clock
    except Exception:  # noqa: BLE001 - an attribute the driver does not report: no bound, said so
        peak = None
    return {"simulator": False, "device": name, "cc": list(dev.compute_capability), "peak_gbs": peak}


def load(program_path, simulate=False):
    """Import the kernel module (the candidate, the reference or a library baseline).

    ``simulate`` is decided by the evaluator and set here, in this process, before Numba is
    first imported: the process may come from a fork server that was started before the
    evaluator knew whether a GPU is visible, so an inherited environment cannot be relied on.
    """
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1" if simulate else "0"
    cuda = _cuda()
    if not simulated() and not cuda.is_available():
        raise RuntimeError("CUDA is not available in this process")
    spec = importlib.util.spec_from_file_location("kernel_under_test", program_path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {os.path.basename(program_path)}")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, os.path.dirname(os.path.abspath(program_path)))
    spec.loader.exec_module(module)
    if not callable(getattr(module, "launch", None)):
        raise AttributeError("the kernel module must define launch(x, out)")
    _loaded["module"] = module
    return device_info()


def prepare(in_paths, shape, warmup=3):
    """Copy fresh inputs to the device, warm the kernel up, zero the outputs (all untimed).

    Zeroing after the warm-up means only the timed launches can have written what
    :func:`fetch` hands back for checking.
    """
    cuda = _cuda()
    launch = _loaded["module"].launch
    xs = [cuda.to_device(np.fromfile(p, dtype=DTYPE).reshape(tuple(shape))) for p in in_paths]
    outs = [cuda.device_array(tuple(shape), dtype=DTYPE) for _ in in_paths]
    for i in range(warmup):
        launch(xs[i % len(xs)], outs[i % len(outs)])
    cuda.synchronize()
    zeros = np.zeros(tuple(shape), dtype=DTYPE)
    for dev in outs:
        dev.copy_to_device(zeros)
    cuda.synchronize()
    _loaded["xs"], _loaded["outs"] = xs, outs
    return len(in_paths)


def time_launches(launches):
    """GPU milliseconds between two CUDA events around ``launches`` launches over the buffers.

    Rotating over several buffers whose total exceeds the L2 cache keeps the inputs coming
    from device memory, as in real use.
    """
    cuda = _cuda()
    launch, xs, outs = _loaded["module"].launch, _loaded["xs"], _loaded["outs"]
    start, end = cuda.event(), cuda.event()
    wall = time.perf_counter()
    start.record()
    for i in range(launches):
        launch(xs[i % len(xs)], outs[i % len(outs)])
    end.record()
    end.synchronize()
    wall = time.perf_counter() - wall
    gpu_ms = start.elapsed_time(end) if not simulated() else wall * 1e3
    return {"gpu_ms": float(gpu_ms), "launches": int(launches)}


def fetch(out_paths):
    """Write the device outputs back to the evaluator's files."""
    for path, dev in zip(out_paths, _loaded["outs"], strict=True):
        dev.copy_to_host().tofile(path)
    return len(out_paths)
