"""Evaluator for the GPU softmax task: correct anywhere, timed only on a real GPU.

* Correctness is checked on every machine: with no GPU visible the kernel runs on Numba's
  CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``), on small fresh random inputs each call,
  against a softmax computed here in float64. Such a run scores correctness only and says so
  in its feedback: it never reports a speed.
* With a GPU, each shape is timed with CUDA events around many launches after a warm-up,
  rotating over input buffers larger than the L2 cache, median of repeats; the same harness
  times a baseline: CuPy's softmax when CuPy is installed (a library baseline), else the
  task's reference kernel. The score is the geometric-mean speedup over that baseline.
* Integrity: the candidate runs in its own process (agentopt_guest.CandidateProcess), every
  timed call gets fresh inputs and zeroed outputs that are checked afterwards, the GPU time
  a call reports must fit the wall time this process measured around it, and a time below
  what the device's memory bandwidth allows (read the input once, write the output once) is
  flagged and scores 0.
"""

import math
import os
import statistics
import tempfile
import time

import numpy as np
from agentopt_guest import CandidateError, CandidateProcess

HERE = os.path.dirname(os.path.abspath(__file__))
HARNESS = os.path.join(HERE, "gpu_harness.py")
REFERENCE = os.path.join(HERE, "reference_kernel.py")
CUPY_BASELINE = os.path.join(HERE, "baseline_cupy.py")

SMOKE_SHAPES = [(3, 17), (2, 300)]  # simulator-sized: odd widths, a width > the block size
CHECK_SHAPES = [(4, 1), (5, 129), (2, 1000)]
TIMING_SHAPES = [(8192, 8192), (65536, 1024), (1024, 65536)]  # 256 MiB each in float32
BUFFERS = 2  # 2 x 256 MiB rotates past any current L2 cache
TARGET_S, MAX_LAUNCHES, WARMUP, REPEATS = 0.05, 2000, 5, 7
RTOL, ATOL = 1e-4, 1e-6
WALL_FIT = 0.5  # the GPU time a call reports must cover at least this share of its wall time
IMPORT_TIMEOUT, CALL_TIMEOUT = 120.0, 120.0


def reference_softmax(x):
    x = x.astype(np.float64)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def bandwidth_problem(seconds, bytes_moved, peak_gbs):
    """Why a kernel time is physically implausible (faster than moving its bytes at peak), or None."""
    if not peak_gbs:
        return None
    bound_s = bytes_moved / (peak_gbs * 1e9)
    if seconds < bound_s:
        return (f"{seconds * 1e6:.2f} us is faster than the memory-bandwidth bound "
                f"{bound_s * 1e6:.2f} us at {peak_gbs:.0f} GB/s")
    return None


def gpu_visible():
    """Why no GPU can be used here, or None when one is visible to this sandbox."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) == "":
        return "no GPU was given to this sandbox (CUDA_VISIBLE_DEVICES is empty; set sandbox.gpus)"
    if not os.path.exists("/dev/nvidiactl"):
        return "no NVIDIA device nodes in this sandbox (/dev/nvidiactl missing)"
    return None


class Buffers:
    """Fresh random inputs and zeroed outputs in files the harness memory-maps."""

    def __init__(self, workdir, shape, count, rng):
        self.shape, self.rng = tuple(shape), rng
        tag = f"{shape[0]}x{shape[1]}"
        self.ins = [os.path.join(workdir, f"in_{tag}_{i}.bin") for i in range(count)]
        self.outs = [os.path.join(workdir, f"out_{tag}_{i}.bin") for i in range(count)]
        self.expected = []

    def refill(self):
        self.expected = []
        for path_in, path_out in zip(self.ins, self.outs, strict=True):
            x = self.rng.normal(0.0, 4.0, size=self.shape).astype(np.float32)
            x.tofile(path_in)
            np.zeros(self.shape, dtype=np.float32).tofile(path_out)
            self.expected.append(reference_softmax(x))

    def problem(self):
        for path, want in zip(self.outs, self.expected, strict=True):
            got = np.fromfile(path, dtype=np.float32).reshape(self.shape)
            if not np.all(np.isfinite(got)):
                return "output has non-finite values"
            if not np.allclose(got, want, rtol=RTOL, atol=ATOL):
                return f"output differs from softmax (max abs error {float(np.max(np.abs(got - want))):.3g})"
        return None


def _start(kernel_path, simulate=False):
    proc = CandidateProcess(HARNESS, import_timeout=IMPORT_TIMEOUT)
    proc.start()
    try:
        info = proc.call("load", os.path.abspath(kernel_path), simulate, timeout=IMPORT_TIMEOUT)
    except CandidateError:
        proc.close()
        raise
    return proc, info


def _run(proc, buffers, launches, warmup):
    """Fresh inputs, ``launches`` timed launches, outputs fetched; (gpu s, wall s of the launches)."""
    buffers.refill()
    proc.call("prepare", buffers.ins, list(buffers.shape), warmup, timeout=CALL_TIMEOUT)
    start = time.perf_counter()
    reply = proc.call("time_launches", launches, timeout=CALL_TIMEOUT)
    wall = time.perf_counter() - start
    proc.call("fetch", buffers.outs, timeout=CALL_TIMEOUT)
    return float(reply["gpu_ms"]) / 1e3, wall


def _check_shapes(proc, shapes, rng, workdir):
    for shape in shapes:
        buffers = Buffers(workdir, shape, 1, rng)
        _run(proc, buffers, 1, 0)
        problem = buffers.problem()
        if problem:
            return f"shape {shape}: {problem}"
    return None


def _fail(message, **extra):
    return {"score": 0.0, "correct": 0.0, "error": message, "feedback": message, **extra}


def _correctness(program_path, shapes, why_no_gpu):
    """Correct on fresh random inputs? On the simulator when ``why_no_gpu`` says there is no GPU."""
    gpu = 0.0 if why_no_gpu else 1.0
    rng = np.random.default_rng(int.from_bytes(os.urandom(4), "little"))
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as workdir:
        try:
            proc, _ = _start(program_path, simulate=bool(why_no_gpu))
            try:
                problem = _check_shapes(proc, shapes, rng, workdir)
            finally:
                proc.close()
        except CandidateError as err:
            return _fail(f"candidate failed: {err}", gpu=gpu)
    if problem:
        return _fail(problem, gpu=gpu)
    where = f"CUDA simulator; {why_no_gpu}" if why_no_gpu else "GPU"
    return {"score": 1.0, "correct": 1.0, "gpu": gpu,
            "feedback": f"correct on {len(shapes)} fresh random inputs ({where})."
                        + (" Scored on correctness only: speed is measured only on a GPU." if why_no_gpu else "")}


def _median_time(proc, buffers):
    """Median seconds per launch over REPEATS timed calls, each output-checked and wall-fitted.

    The launch count is chosen from a first short call so that one timed call lasts about
    TARGET_S: long enough that the wall time around it, measured here, is dominated by the
    launches, which is what makes the wall-fit check meaningful.
    """
    gpu_s, _ = _run(proc, buffers, BUFFERS, WARMUP)
    launches = int(min(MAX_LAUNCHES, max(BUFFERS, TARGET_S / max(gpu_s / BUFFERS, 1e-7))))
    launches -= launches % BUFFERS  # every buffer gets the same number of launches
    per_launch = []
    for _ in range(REPEATS):
        gpu_s, wall_s = _run(proc, buffers, launches, WARMUP)
        problem = buffers.problem()
        if problem:
            raise ValueError(problem)
        if gpu_s > wall_s or gpu_s < WALL_FIT * wall_s:
            raise PermissionError(f"reported GPU time {gpu_s * 1e3:.3f} ms does not fit the "
                                  f"{wall_s * 1e3:.3f} ms measured around the call")
        per_launch.append(gpu_s / launches)
    return statistics.median(per_launch)


def _timed(program_path, workdir, rng):
    cand, info = _start(program_path)
    base_path, baseline = CUPY_BASELINE, "cupy"
    try:
        try:
            base, _ = _start(CUPY_BASELINE)
        except CandidateError:
            base_path, baseline = REFERENCE, "reference kernel (install cupy for a library baseline)"
            base, _ = _start(REFERENCE)
        try:
            problem = _check_shapes(cand, CHECK_SHAPES, rng, workdir)
            if problem:
                return _fail(problem, gpu=1.0)
            metrics, lines, speedups = {"gpu": 1.0, "correct": 1.0, "flagged": 0.0}, [], []
            peak = info.get("peak_gbs")
            for shape in TIMING_SHAPES:
                buffers = Buffers(workdir, shape, BUFFERS, rng)
                key = f"{shape[0]}x{shape[1]}"
                try:
                    cand_s = _median_time(cand, buffers)
                except ValueError as err:
                    return _fail(f"shape {key}: {err}", gpu=1.0)
                except PermissionError as err:
                    return _fail(f"shape {key}: {err}: flagged", gpu=1.0, flagged=1.0)
                base_s = _median_time(base, buffers)
                moved = 2 * shape[0] * shape[1] * 4  # read x once, write out once
                metrics[f"time_us_{key}"] = cand_s * 1e6
                metrics[f"speedup_{key}"] = base_s / cand_s
                speedups.append(base_s / cand_s)
                flag = bandwidth_problem(cand_s, moved, peak)
                if peak:
                    metrics[f"bandwidth_fraction_{key}"] = moved / (peak * 1e9) / cand_s
                if flag:
                    msg = f"shape {key}: {flag} ({info['device']}): flagged for review"
                    return {**metrics, "score": 0.0, "flagged": 1.0, "feedback": msg}
                lines.append(f"{key}: {cand_s * 1e6:.1f} us vs {baseline.split(' ')[0]} {base_s * 1e6:.1f} us "
                             f"({base_s / cand_s:.2f}x)" + (f", {metrics[f'bandwidth_fraction_{key}']:.0%} of peak bandwidth" if peak else ""))
        finally:
            base.close()
    finally:
        cand.close()
    score = math.exp(sum(math.log(s) for s in speedups) / len(speedups))
    bound_note = f"peak {peak:.0f} GB/s" if peak else "peak bandwidth unknown: no bound check"
    feedback = (f"device {info['device']} ({bound_note}); baseline: {baseline}\n" + "\n".join(lines))
    return {**metrics, "score": score, "feedback": feedback,
            "artifacts": {"device": str(info["device"]), "baseline": os.path.basename(base_path)}}


def evaluate_stage1(program_path):
    """Cheap gate on every machine: imports, launches, and is correct on tiny shapes."""
    return _correctness(program_path, SMOKE_SHAPES, gpu_visible())


def evaluate(program_path):
    """Speedup over the baseline on a GPU; correctness only (said in the feedback) elsewhere."""
    why_no_gpu = gpu_visible()
    if why_no_gpu:
        return _correctness(program_path, SMOKE_SHAPES + CHECK_SHAPES, why_no_gpu)
    rng = np.random.default_rng(int.from_bytes(os.urandom(4), "little"))
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as workdir:
        try:
            return _timed(program_path, workdir, rng)
        except CandidateError as err:
            return _fail(f"candidate failed: {err}", gpu=1.0)
