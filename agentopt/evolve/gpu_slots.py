"""How many evaluations may run at once when candidates get GPUs.

``search.parallel_evaluations`` is a CPU-side knob; with ``sandbox.gpus`` set, every
evaluation is handed the same GPU set, so running more evaluations than GPUs makes them
fight over device memory (out-of-memory failures that look like bad candidates) and skews
timing-based scores. The controller therefore caps evaluation concurrency at
``number of GPUs x search.evaluations_per_gpu`` (default 1 per GPU); a task whose evaluator
shares a GPU safely raises ``evaluations_per_gpu`` or sets it to null (no cap).
"""

from __future__ import annotations

import glob
import shutil
import subprocess

from agentopt.task import GpuRequest, TaskSpec

__all__ = ["evaluation_slots"]


def _detect_all() -> int:
    """GPUs visible on this host: NVIDIA device nodes, else ``nvidia-smi -L`` lines, else 1
    (``gpus: all`` on a host we cannot inspect, e.g. a remote docker: assume one)."""
    nodes = glob.glob("/dev/nvidia[0-9]*")
    if nodes:
        return len(nodes)
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=15, check=False).stdout
        except (OSError, subprocess.TimeoutExpired):
            out = ""
        count = sum(1 for line in out.splitlines() if line.startswith("GPU "))
        if count:
            return count
    return 1


def evaluation_slots(spec: TaskSpec) -> tuple[int, str | None]:
    """``(evaluations allowed at once, note)``; the note explains a cap (None when no cap applied)."""
    wanted = max(1, spec.search.parallel_evaluations)
    request = GpuRequest.parse(spec.sandbox.gpus)
    gpus = request.number(all_as=_detect_all() if request.all else 0)
    per_gpu = spec.search.evaluations_per_gpu
    if gpus == 0 or per_gpu is None or wanted <= gpus * per_gpu:
        return wanted, None
    cap = gpus * per_gpu
    note = (
        f"search.parallel_evaluations={wanted} capped to {cap}: {gpus} GPU(s) x evaluations_per_gpu={per_gpu} "
        "(set search.evaluations_per_gpu to share GPUs)"
    )
    return cap, note
