"""The GPU softmax task (Numba CUDA): correctness everywhere, speed only on a real GPU.

On a machine without a GPU (CI) the evaluator runs kernels on Numba's CUDA simulator and
scores correctness only; these tests check that path end to end through the real local
sandbox, that wrong and lazy kernels fail, that the timing harness round-trips, and that the
evaluator's integrity rules (wall-time fit, memory-bandwidth bound) reject fake speeds. The
tests marked GPU run only where a GPU and Numba's CUDA driver are present.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from agentopt.evaluate import evaluate_program
from agentopt.sandbox.factory import make_sandbox
from agentopt.task import load_task

try:  # `python -m pytest` (repo root on sys.path) or plain `pytest` (tests/ on sys.path)
    from tests.task_files import load_evaluator, with_block
except ImportError:
    from task_files import load_evaluator, with_block  # type: ignore[no-redef]

REPO = Path(__file__).resolve().parents[1]
TASK = REPO / "tasks" / "gpu_softmax"

if importlib.util.find_spec("numba") is None:  # pragma: no cover - CI installs the gpu extra
    pytest.skip("numba is not installed (pip install -e '.[gpu]'): GPU kernel task tests skipped",
                allow_module_level=True)


def _module(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def evaluator():
    yield from load_evaluator("gpu_softmax")


def _evaluate_in_sandbox(spec):  # noqa: ANN001, ANN202 - TaskSpec -> EvalResult
    """Evaluate the task's program once through the backend its task file names."""
    sandbox = make_sandbox(spec.sandbox)

    async def go():
        try:
            return await evaluate_program(sandbox, spec, spec.program)
        finally:
            await sandbox.close()

    return asyncio.run(go())


NO_MAX_SHIFT_WRONG_SUM = """\
from numba import cuda
import math


@cuda.jit
def k(x, out):
    row = cuda.blockIdx.x
    j = cuda.threadIdx.x
    while j < x.shape[1]:
        out[row, j] = math.exp(x[row, j])  # forgot to normalise
        j += cuda.blockDim.x


def launch(x, out):
    k[x.shape[0], 32](x, out)
"""

LAZY = """\
def launch(x, out):
    pass  # writes nothing: the zeroed output must fail the check
"""


def test_task_loads_with_the_simulator_thread_budget() -> None:
    spec = load_task(TASK / "task.yaml")
    assert spec.sandbox.max_processes >= 1024  # one thread per simulated GPU thread
    assert spec.sandbox.gpus is None
    assert load_task(TASK / "task_gpu.yaml").sandbox.gpus == 1


def test_initial_kernel_is_correct_in_the_sandbox_and_scored_on_correctness_only() -> None:
    """End to end through the real local sandbox (no GPU given): correct, no speed claimed."""
    spec = load_task(TASK / "task.yaml")
    result = _evaluate_in_sandbox(spec)
    assert result.error is None, result.error
    assert result.score == 1.0
    assert result.metrics["correct"] == 1.0 and result.metrics["gpu"] == 0.0
    assert "correctness only" in result.feedback and "simulator" in result.feedback
    assert not any(k.startswith(("time_us", "speedup")) for k in result.metrics)


@pytest.mark.parametrize(("block", "reason"), [(NO_MAX_SHIFT_WRONG_SUM, "differs"), (LAZY, "differs")])
def test_wrong_or_lazy_kernels_fail(evaluator, tmp_path: Path, monkeypatch, block: str, reason: str) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    result = evaluator.evaluate_stage1(with_block("gpu_softmax", tmp_path, block))
    assert result["score"] == 0.0 and result["correct"] == 0.0
    assert reason in result["error"]


def test_broken_candidate_is_a_failure_with_its_reason(evaluator, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    result = evaluator.evaluate_stage1(with_block("gpu_softmax", tmp_path, "def launch(x):\n    return 1 / 0\n"))
    assert result["score"] == 0.0 and "candidate failed" in result["error"]


def test_harness_round_trip_on_the_simulator(tmp_path: Path, monkeypatch) -> None:
    """prepare -> time_launches -> fetch writes softmax for fresh inputs, warm-up outputs erased."""
    monkeypatch.setenv("NUMBA_ENABLE_CUDASIM", "1")
    harness = _module("gpu_harness_under_test", TASK / "gpu_harness.py")
    info = harness.load(str(TASK / "reference_kernel.py"), True)
    assert info["simulator"] is True and info["peak_gbs"] is None
    x = np.random.default_rng(1).normal(0, 4, size=(3, 40)).astype(np.float32)
    x.tofile(tmp_path / "in.bin")
    harness.prepare([str(tmp_path / "in.bin")], [3, 40], 1)
    assert not harness._loaded["outs"][0].copy_to_host().any()  # zeroed after the warm-up
    reply = harness.time_launches(1)
    harness.fetch([str(tmp_path / "out.bin")])
    got = np.fromfile(tmp_path / "out.bin", dtype=np.float32).reshape(3, 40)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    assert np.allclose(got, e / e.sum(axis=1, keepdims=True), rtol=1e-5)
    assert reply["launches"] == 1 and reply["gpu_ms"] >= 0


class _FakeHarness:
    """Stands in for the candidate's process: correct outputs, GPU times honest or faked."""

    def __init__(self, report_share: float) -> None:
        self.report_share = report_share
        self.shape: tuple[int, int] = (1, 1)
        self.ins: list[str] = []

    def call(self, fn, *args, timeout=0.0):  # noqa: ANN001, ANN201 - CandidateProcess.call's shape
        if fn == "prepare":
            self.ins, self.shape = args[0], tuple(args[1])
            return len(self.ins)
        if fn == "time_launches":
            start = time.perf_counter()
            time.sleep(0.002 * min(args[0], 10))
            return {"gpu_ms": (time.perf_counter() - start) * 1e3 * self.report_share, "launches": args[0]}
        if fn == "fetch":
            for src, dst in zip(self.ins, args[0], strict=True):
                x = np.fromfile(src, dtype=np.float32).reshape(self.shape).astype(np.float64)
                e = np.exp(x - x.max(axis=1, keepdims=True))
                (e / e.sum(axis=1, keepdims=True)).astype(np.float32).tofile(dst)
            return len(args[0])
        raise AssertionError(fn)


def test_reported_gpu_time_must_fit_the_wall_time_seen_outside(evaluator, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(evaluator, "REPEATS", 2)
    monkeypatch.setattr(evaluator, "TARGET_S", 0.01)
    rng = np.random.default_rng(0)
    honest = evaluator._median_time(_FakeHarness(1.0), evaluator.Buffers(str(tmp_path), (4, 8), 2, rng))
    assert honest > 0
    with pytest.raises(PermissionError, match="does not fit"):
        evaluator._median_time(_FakeHarness(0.01), evaluator.Buffers(str(tmp_path), (4, 8), 2, rng))


def test_faster_than_memory_bandwidth_is_flagged(evaluator) -> None:
    moved = 2 * 8192 * 8192 * 4  # 512 MiB of traffic
    assert evaluator.bandwidth_problem(100e-6, moved, 4800.0) is not None  # needs >= 112 us at 4.8 TB/s
    assert evaluator.bandwidth_problem(150e-6, moved, 4800.0) is None
    assert evaluator.bandwidth_problem(1e-9, moved, None) is None  # unknown peak: no claim either way


def _gpu_reason() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return "no nvidia-smi on this machine"
    probe = subprocess.run([sys.executable, "-c", "from numba import cuda; assert cuda.is_available()"],
                           capture_output=True, text=True, env={**os.environ, "NUMBA_ENABLE_CUDASIM": "0"})
    if probe.returncode != 0:
        return "numba cannot reach a GPU (pip install 'numba-cuda[cu12]')"
    return None


@pytest.mark.skipif(_gpu_reason() is not None, reason=f"GPU timing: {_gpu_reason()}")
def test_gpu_timing_end_to_end_on_a_real_gpu() -> None:  # pragma: no cover - GPU hosts only
    spec = load_task(TASK / "task_gpu.yaml")
    result = _evaluate_in_sandbox(spec)
    assert result.error is None, result.error
    assert result.metrics["gpu"] == 1.0 and result.metrics["flagged"] == 0.0
    assert result.score is not None and result.score > 0
    assert "device" in result.feedback and result.artifacts.get("device")


def _docker_gpu_reason() -> str | None:
    reason = _gpu_reason()
    if reason:
        return reason
    if shutil.which("docker") is None:
        return "no docker CLI"
    runtimes = subprocess.run(["docker", "info", "--format", "{{json .Runtimes}}"], capture_output=True, text=True)
    if runtimes.returncode != 0 or "nvidia" not in runtimes.stdout:
        return "the Docker engine has no NVIDIA runtime (nvidia-container-toolkit)"
    from agentopt.sandbox.images import default_tag

    if subprocess.run(["docker", "image", "inspect", default_tag("cuda")], capture_output=True).returncode != 0:
        return f"no {default_tag('cuda')} image (agentopt sandbox build cuda)"
    return None


@pytest.mark.skipif(_docker_gpu_reason() is not None, reason=f"docker GPU passthrough: {_docker_gpu_reason()}")
def test_gpu_passthrough_times_the_kernel_in_docker() -> None:  # pragma: no cover - GPU hosts only
    spec = load_task(TASK / "task_gpu.yaml")
    spec.sandbox.kind = "docker"
    result = _evaluate_in_sandbox(spec)
    assert result.error is None, result.error
    assert result.metrics["gpu"] == 1.0 and result.score is not None and result.score > 0
    assert result.artifacts.get("device")  # the device the speed was measured on is recorded
