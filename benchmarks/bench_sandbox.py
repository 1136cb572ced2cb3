"""Per-evaluation overhead of each sandbox backend, measured in one run, printed as one table.

    python benchmarks/bench_sandbox.py [--n 20] [--image agentopt/sandbox-cpu:0.1] [--concurrency 1]

Every backend runs the same trivial evaluator (import the candidate, return a number), so the
time is almost all sandbox overhead: process/namespace/container start, file staging, the
result frame, teardown. One untimed warm-up job per backend first (Ray start-up, image page
cache, the warm container's creation are reported separately as "first"). Backends that cannot
run here are listed with the reason instead of a number.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agentopt.sandbox.base import Sandbox, SandboxJob  # noqa: E402

EVALUATOR = """
import runpy
def evaluate(program_path):
    return {"score": float(runpy.run_path(program_path)["VALUE"])}
"""


def _local(isolation: str) -> tuple[Callable[[], Sandbox] | None, str | None]:
    from agentopt.errors import SandboxError
    from agentopt.sandbox.local import LocalSandbox

    try:
        LocalSandbox(isolation=isolation)  # type: ignore[arg-type]
    except SandboxError as err:
        return None, str(err)
    return (lambda: LocalSandbox(isolation=isolation)), None  # type: ignore[arg-type]


def _docker(image: str, warm: int) -> tuple[Callable[[], Sandbox] | None, str | None]:
    from agentopt.sandbox.docker_backend import DockerSandbox, unavailable_reason

    reason = unavailable_reason(image)
    if reason:
        return None, reason
    return (lambda: DockerSandbox(image, warm_workers=warm)), None


def _ray(cpus: int) -> tuple[Callable[[], Sandbox] | None, str | None]:
    from agentopt.sandbox.ray_backend import RaySandbox, unavailable_reason

    reason = unavailable_reason()
    if reason:
        return None, reason
    return (lambda: RaySandbox(init_kwargs={"num_cpus": cpus, "include_dashboard": False})), None


async def _measure(make: Callable[[], Sandbox], job: SandboxJob, n: int, concurrency: int) -> dict[str, float]:
    sandbox = make()
    try:
        t0 = time.perf_counter()
        first = await sandbox.run(job)
        first_s = time.perf_counter() - t0
        if not first.ok:
            raise RuntimeError(f"warm-up job failed: {first.error_kind}: {first.error}")
        times: list[float] = []
        guest: list[float] = []
        sem = asyncio.Semaphore(concurrency)

        async def one() -> None:
            async with sem:
                t = time.perf_counter()
                r = await sandbox.run(job)
                times.append(time.perf_counter() - t)
                guest.append(r.wall_s)
                if not r.ok:
                    raise RuntimeError(f"job failed: {r.error_kind}: {r.error}")

        t_all = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        total = time.perf_counter() - t_all
    finally:
        await sandbox.close()
    times.sort()
    return {
        "first": first_s,
        "median": statistics.median(times),
        "mean": statistics.fmean(times),
        "p90": times[min(len(times) - 1, int(0.9 * len(times)))],
        "guest": statistics.median(guest),
        "per_s": n / total,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20, help="timed evaluations per backend")
    parser.add_argument("--image", default="agentopt/sandbox-cpu:0.1")
    parser.add_argument("--concurrency", type=int, default=1, help="jobs in flight at once")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="agentopt-bench-") as tmp:
        evaluator = Path(tmp) / "evaluator.py"
        program = Path(tmp) / "program.py"
        evaluator.write_text(EVALUATOR)
        program.write_text("VALUE = 1\n")
        job = SandboxJob(evaluator_path=evaluator, program_path=program, timeout_s=60)
        rows: list[tuple[str, tuple[Callable[[], Sandbox] | None, str | None]]] = [
            ("local (no namespaces)", _local("none")),
            ("local (namespaces)", _local("namespaces")),
            ("docker cold", _docker(args.image, 0)),
            ("docker warm", _docker(args.image, max(1, args.concurrency))),
            ("ray (local sandbox per task)", _ray(max(2, args.concurrency))),
        ]
        print(f"per-evaluation overhead, n={args.n}, concurrency={args.concurrency} (seconds)")
        header = f"{'backend':30} {'first':>7} {'median':>7} {'mean':>7} {'p90':>7} {'guest':>7} {'evals/s':>8}"
        print(header)
        print("-" * len(header))
        for name, (make, reason) in rows:
            if make is None:
                print(f"{name:30} skipped: {reason}")
                continue
            try:
                m = asyncio.run(_measure(make, job, args.n, args.concurrency))
            except Exception as err:  # noqa: BLE001 - a row fails, the table goes on
                print(f"{name:30} failed: {' '.join(str(err).split())[:100]}")
                continue
            print(f"{name:30} {m['first']:7.3f} {m['median']:7.3f} {m['mean']:7.3f} {m['p90']:7.3f} "
                  f"{m['guest']:7.3f} {m['per_s']:8.2f}")
        print("first = warm-up job (includes Ray start / warm container creation); guest = JobResult.wall_s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
