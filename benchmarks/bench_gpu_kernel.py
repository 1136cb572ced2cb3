"""The GPU kernel task end to end: evaluations per minute and best speedup, per backend.

    python benchmarks/bench_gpu_kernel.py [--minutes 3] [--backends local,docker] [--image TAG]

On a GPU host each backend runs ``tasks/gpu_softmax/task_gpu.yaml`` (one GPU per evaluation,
speed timed with CUDA events) for the given wall time with the offline symbolic mutator; on a
machine without a GPU it runs ``task.yaml`` (correctness on Numba's CUDA simulator) and the
table says that no speed was measured. Backends that cannot run here are listed with the reason.
The table: backend, device, evaluations, evaluations per minute, initial and best score
(speedup over the baseline on a GPU), and the baseline used.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
TASK_DIR = REPO / "tasks" / "gpu_softmax"


def has_gpu() -> bool:
    return shutil.which("nvidia-smi") is not None and subprocess.run(
        ["nvidia-smi", "-L"], capture_output=True, check=False
    ).returncode == 0


def task_file(workdir: Path, backend: str, minutes: float, image: str | None) -> Path:
    """The bundled task with absolute paths, the chosen backend and a wall-time budget."""
    name = "task_gpu.yaml" if has_gpu() else "task.yaml"
    spec = yaml.safe_load((TASK_DIR / name).read_text())
    for key in ("program", "evaluator"):
        spec[key] = str(TASK_DIR / spec[key])
    spec["extra_files"] = [str(TASK_DIR / p) for p in spec.get("extra_files", [])]
    spec["sandbox"]["kind"] = backend
    if image:
        spec["sandbox"]["image"] = image
    spec["search"]["iterations"] = 100000
    spec["search"].setdefault("budget", {})["max_wall_s"] = minutes * 60
    path = workdir / f"{backend}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def run(backend: str, minutes: float, image: str | None) -> dict:
    agentopt = Path(sys.executable).with_name("agentopt")
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        work = Path(tmp)
        out = work / "run"
        proc = subprocess.run(
            [str(agentopt), "evolve", str(task_file(work, backend, minutes, image)), "-o", str(out), "-q"],
            capture_output=True, text=True, check=False, timeout=minutes * 60 + 600,
        )
        summary_path = out / "summary.json"
        if proc.returncode != 0 or not summary_path.exists():
            last = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
            return {"backend": backend, "error": last}
        summary = json.loads(summary_path.read_text())
        return {
            "backend": backend,
            "evaluations": summary.get("evaluations"),
            "wall_s": summary.get("wall_s"),
            "initial": summary.get("initial_score"),
            "best": summary.get("best_score"),
            "feedback": _best_feedback(out / "programs.db", summary.get("best_program_id")),
        }


def _best_feedback(db_path: Path, program_id: str | None) -> list[str]:
    """First line of the best program's feedback (device, baseline), read from the run's store."""
    if not program_id:
        return []
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT data FROM programs WHERE id = ?", (program_id,)).fetchone()
    finally:
        conn.close()
    blob = row[0] if row else b"{}"
    data = json.loads(zlib.decompress(blob) if isinstance(blob, bytes) and blob[:1] == b"x" else blob)
    return str(data.get("feedback", "")).splitlines()[:1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--backends", default="local,docker")
    parser.add_argument("--image", default=None, help="docker image (default: the cuda/cpu sandbox image)")
    args = parser.parse_args()
    gpu = has_gpu()
    print(f"GPU: {'yes' if gpu else 'no (correctness only, CUDA simulator)'}; load {os.getloadavg()[0]:.1f}")
    print("| backend | evaluations | eval/min | initial | best | first line of best feedback |")
    print("| --- | --- | --- | --- | --- | --- |")
    for backend in args.backends.split(","):
        row = run(backend.strip(), args.minutes, args.image)
        if "error" in row:
            print(f"| {row['backend']} | — | — | — | — | not run: {row['error']} |")
            continue
        rate = (row["evaluations"] or 0) / max(row["wall_s"] or 1e-9, 1e-9) * 60
        print(f"| {row['backend']} | {row['evaluations']} | {rate:.1f} | {row['initial']} | {row['best']} | "
              f"{' '.join(row['feedback'])[:120]} |")


if __name__ == "__main__":
    main()
