"""Per-evaluation overhead of each sandbox backend, and exp_approx evaluations per second against
another checkout (e.g. main), each measured INTERLEAVED in one run and printed as a table.

    python benchmarks/bench_sandbox.py [--n 20] [--image agentopt/sandbox-cpu:0.1]
    python benchmarks/bench_sandbox.py --exp-approx --baseline /work/main [--rounds 3 --n 12]

Overhead: every backend runs the same trivial evaluator (import the candidate, return a
number), so the time is almost all sandbox overhead. Round i runs one job on every backend
in turn (load swings hit all rows alike); "bare fork+exec" is ``python -I -c pass`` started
the same way each round, the floor the issue's target (<= 2x of it) refers to. One untimed
warm-up job per backend first ("first": Ray start-up, warm worker start...).

exp_approx: each (checkout, local backend) runs the task's full cascade through
``evaluate_program`` in a fresh process at the task's parallel_evaluations, round-robin.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

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


def _local_warm() -> tuple[Callable[[], Sandbox] | None, str | None]:
    from agentopt.sandbox.warm_local import WarmLocalSandbox, warm_unavailable

    reason = warm_unavailable()
    return (None, reason) if reason else (WarmLocalSandbox, None)


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


class _Bare:
    """Not a sandbox: ``python -I -c pass`` through the same asyncio subprocess call, as a floor."""

    async def run(self, job: SandboxJob) -> object:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-I", "-c", "pass")
        await proc.wait()
        return None

    async def close(self) -> None:
        return None


def _self_cpu_s() -> float:
    """CPU of this process, every thread (the event loop, executor threads, the cgroup pool's)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _guest_cpu_s() -> float:
    """CPU of everything this process started: reaped children plus live descendants (warm
    workers, which have reaped their jobs). Read outside the timed window (it scans /proc)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + _tree_cpu_s(os.getpid(), include_root=False)


async def _settle(sb: Sandbox) -> None:
    """Let a sandbox finish the background cleanup of the last job, so its CPU lands in its row."""
    pool = getattr(sb, "_cgroups", None)
    if pool is not None:
        await asyncio.to_thread(pool.drain)


async def _overhead(rows: list[tuple[str, Callable[[], Sandbox]]], job: SandboxJob, n: int) -> dict[str, dict]:
    boxes: dict[str, Sandbox] = {}
    out: dict[str, dict] = {}
    try:
        for name, make in rows:
            try:
                sb = make()
                t0 = time.perf_counter()
                first = await sb.run(job)
                if first is not None and not first.ok:
                    raise RuntimeError(f"warm-up job failed: {first.error_kind}: {first.error}")
                boxes[name] = sb
                out[name] = {"first": time.perf_counter() - t0, "times": [], "host_cpu": 0.0, "guest_cpu": 0.0}
            except Exception as err:  # noqa: BLE001 - a row fails, the table goes on
                out[name] = {"error": " ".join(str(err).split())[:100]}
        for _ in range(n):
            for name, sb in boxes.items():
                await _settle(sb)
                guest0 = _guest_cpu_s()
                host0 = _self_cpu_s()
                t = time.perf_counter()
                r = await sb.run(job)
                out[name]["times"].append(time.perf_counter() - t)
                await _settle(sb)  # background cleanup: off the job's wall time, not off its CPU
                out[name]["host_cpu"] += _self_cpu_s() - host0
                out[name]["guest_cpu"] += _guest_cpu_s() - guest0
                if r is not None and not r.ok:
                    out[name]["error"] = f"job failed: {r.error_kind}: {r.error}"
        for name, sb in boxes.items():
            out[name]["fallbacks"] = getattr(sb, "cold_fallbacks", 0)
    finally:
        for sb in boxes.values():
            await sb.close()
    return out


def overhead_table(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="agentopt-bench-") as tmp:
        evaluator = Path(tmp) / "evaluator.py"
        program = Path(tmp) / "program.py"
        evaluator.write_text(EVALUATOR)
        program.write_text("VALUE = 1\n")
        job = SandboxJob(evaluator_path=evaluator, program_path=program, timeout_s=60)
        candidates: list[tuple[str, tuple[Callable[[], Sandbox] | None, str | None]]] = [
            ("bare fork+exec python", (_Bare, None)),  # type: ignore[list-item]
            ("local (no namespaces)", _local("none")),
            ("local cold (namespaces)", _local("namespaces")),
            ("local warm (all layers)", _local_warm()),
        ]
        if not args.local_only:
            candidates += [("docker cold", _docker(args.image, 0)), ("docker warm", _docker(args.image, 1)),
                           ("ray (local sandbox per task)", _ray(2))]
        rows = [(name, make) for name, (make, _r) in candidates if make is not None]
        load0 = os.getloadavg()[0]
        result = asyncio.run(_overhead(rows, job, args.n))
    bare = statistics.median(result["bare fork+exec python"]["times"])
    print(f"per-evaluation latency, n={args.n} interleaved rounds, load {load0:.1f} at start, "
          f"{os.getloadavg()[0]:.1f} at end (1-min avg)")
    header = (f"{'backend':30} {'first':>7} {'median':>7} {'p90':>7} {'x bare':>7} "
              f"{'host CPU':>8} {'guest CPU':>9}")
    print(header)
    print("-" * len(header))
    for name, (make, reason) in candidates:
        if make is None:
            print(f"{name:30} skipped: {reason}")
            continue
        m = result[name]
        if "error" in m and not m.get("times"):
            print(f"{name:30} failed: {m['error']}")
            continue
        times = sorted(m["times"])
        med = statistics.median(times)
        p90 = times[min(len(times) - 1, int(0.9 * len(times)))]
        note = f"  ({m['error']})" if "error" in m else ""
        if m.get("fallbacks"):
            note += f"  [{m['fallbacks']} cold fallbacks]"
        host, guest = (m[k] / len(times) * 1000 for k in ("host_cpu", "guest_cpu"))
        print(f"{name:30} {m['first'] * 1000:6.1f}ms {med * 1000:6.1f}ms {p90 * 1000:6.1f}ms {med / bare:7.2f} "
              f"{host:6.1f}ms {guest:7.1f}ms{note}")
    print("first = warm-up job; x bare = median / median of the bare fork+exec row (same rounds); CPU = mean per "
          "job, host = this process (all threads, incl. background cleanup), guest = every process it started "
          "(clock-tick resolution, summed over the rounds)")


# ---------------------------------------------------------------------------- exp_approx


def _tree_cpu_s(pid: int, include_root: bool = True) -> float:
    """CPU seconds of ``pid`` + every reaped descendant + every live descendant (from /proc).

    Load-independent cost: warm workers' children are reaped by the worker, which is alive, so
    its cutime/cstime fields carry them; cold jobs are reaped by this process.
    """
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            stats[int(entry)] = (int(fields[1]), sum(int(x) for x in fields[11:15]) / tick)
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += stats.get(p, (0, 0.0))[1] if (p != pid or include_root) else 0.0
        todo += [c for c, (ppid, _) in stats.items() if ppid == p]
    return total


def _exp_worker(root: str, warm: str, n: int) -> None:
    """Child process: evaluate exp_approx's initial program n times through root's code."""
    sys.path.insert(0, root)
    for mod in [m for m in sys.modules if m == "agentopt" or m.startswith("agentopt.")]:
        del sys.modules[mod]
    from agentopt.evaluate import evaluate_program
    from agentopt.sandbox.factory import make_sandbox
    from agentopt.task import load_task

    spec = load_task(Path(root) / "tasks" / "exp_approx" / "task.yaml")
    if warm != "default" and "warm" in type(spec.sandbox).model_fields:
        spec.sandbox.warm = warm == "on"  # type: ignore[attr-defined]
    sandbox = make_sandbox(spec.sandbox)
    conc = spec.search.parallel_evaluations

    async def go() -> dict:
        try:
            first = await evaluate_program(sandbox, spec, spec.program)
            if first.error:
                return {"error": first.error}
            sem = asyncio.Semaphore(conc)

            async def one() -> None:
                async with sem:
                    r = await evaluate_program(sandbox, spec, spec.program)
                    if r.error:
                        raise RuntimeError(r.error)

            cpu0 = _tree_cpu_s(os.getpid())
            t0 = time.perf_counter()
            await asyncio.gather(*(one() for _ in range(n)))
            wall = time.perf_counter() - t0
            cpu = _tree_cpu_s(os.getpid()) - cpu0
            return {"per_s": n / wall, "cpu_ms": cpu / n * 1000, "kind": type(sandbox).__name__,
                    "score": first.score}
        finally:
            await sandbox.close()

    print(json.dumps(asyncio.run(go())))


def exp_table(args: argparse.Namespace) -> None:
    configs = []
    if args.baseline:
        configs.append((f"{args.baseline} (default)", args.baseline, "default"))
    configs += [("this checkout, cold", str(ROOT), "off"), ("this checkout, warm", str(ROOT), "on")]
    rates: dict[str, list[float]] = {name: [] for name, _, _ in configs}
    cpus: dict[str, list[float]] = {name: [] for name, _, _ in configs}
    errors: dict[str, str] = {}
    kinds: dict[str, str] = {}
    loads = []
    for _ in range(args.rounds):
        for name, root, warm in configs:
            proc = subprocess.run([sys.executable, __file__, "--_exp-worker", root, warm, str(args.n)],
                                  capture_output=True, text=True, timeout=900, check=False)
            try:
                out = json.loads(proc.stdout.strip().splitlines()[-1])
            except (ValueError, IndexError):
                out = {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
            if "per_s" in out:
                rates[name].append(out["per_s"])
                cpus[name].append(out["cpu_ms"])
                kinds[name] = out["kind"]
            else:
                errors[name] = out["error"][:100]
            loads.append(os.getloadavg()[0])
    print(f"exp_approx full-cascade evaluations/s, {args.n} per run at the task's parallel_evaluations, "
          f"{args.rounds} interleaved rounds, load {min(loads):.1f}-{max(loads):.1f} (1-min avg)")
    base = statistics.median(rates[configs[0][0]]) if rates[configs[0][0]] else None
    base_cpu = statistics.median(cpus[configs[0][0]]) if cpus[configs[0][0]] else None
    header = (f"{'code, backend':40} {'sandbox class':17} {'evals/s':>8} {'runs':>16} {'ratio':>6} "
              f"{'CPU ms/eval':>11} {'CPU ratio':>9}")
    print(header)
    print("-" * len(header))
    for name, _, _ in configs:
        if not rates[name]:
            print(f"{name:40} failed: {errors.get(name)}")
            continue
        med = statistics.median(rates[name])
        cpu = statistics.median(cpus[name])
        runs = " ".join(f"{r:.1f}" for r in rates[name])
        ratio = f"{med / base:6.2f}" if base else "     -"
        cpu_ratio = f"{base_cpu / cpu:9.2f}" if base_cpu else "        -"
        print(f"{name:40} {kinds[name]:17} {med:8.2f} {runs:>16} {ratio} {cpu:11.1f} {cpu_ratio}")
    print("ratio = evals/s over the first row's; CPU ratio = first row's CPU per evaluation over this row's "
          "(all processes of the run: host, workers, jobs)")


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--_exp-worker":
        _exp_worker(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20, help="timed evaluations per backend / per run")
    parser.add_argument("--image", default="agentopt/sandbox-cpu:0.1")
    parser.add_argument("--local-only", action="store_true", help="skip docker and ray rows")
    parser.add_argument("--exp-approx", action="store_true", help="exp_approx evaluations/s instead")
    parser.add_argument("--baseline", help="another checkout (e.g. /work/main) to compare against")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.exp_approx:
        exp_table(args)
    else:
        overhead_table(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
