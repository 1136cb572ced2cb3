"""The `agentopt` command line (Typer). Presentation only: every command calls the Python API.

Heavy modules (litellm, the engine) are imported inside commands so `agentopt --help` is
instant. Errors a user can cause print one line (``error: ...``) and exit with code 2.
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from agentopt import __version__, cli_gc

app = typer.Typer(
    name="agentopt",
    help="Optimize prompts, agent code, hyper-parameters and kernels with LLMs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
sandbox_app = typer.Typer(help="Sandbox images and checks.", no_args_is_help=True)
import_app = typer.Typer(help="Import tasks written for other tools.", no_args_is_help=True)
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(import_app, name="import")

# emoji=False: ":name:" in candidate or evaluator text stays text (it is markup too), and rich's
# emoji table (~3.5 ms to import) is never loaded.
console = Console(emoji=False)
err_console = Console(stderr=True, soft_wrap=True, emoji=False)

F = TypeVar("F", bound=Callable[..., Any])


def _one_line_errors(func: F) -> F:
    """Turn AgentoptError into `error: <one line>` + exit 2, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from agentopt.errors import AgentoptError

        try:
            return func(*args, **kwargs)
        except AgentoptError as err:
            err_console.print(f"[bold red]error:[/] {_inert(str(err))}", highlight=False, soft_wrap=True)
            raise typer.Exit(err.exit_code) from None
        except (typer.Exit, KeyboardInterrupt, SystemExit):
            raise
        except Exception as err:  # a bug in agentopt: one line by default, the traceback with -v
            import logging

            from agentopt.llm.redact import redact

            logging.getLogger("agentopt").debug("internal error", exc_info=True)
            line = redact(" ".join(f"{type(err).__name__}: {err}".split()))[:500]
            err_console.print(
                f"[bold red]internal error:[/] {_inert(line)} (please report it; --verbose shows the traceback)",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _inert(text: str) -> str:
    """Candidate/evaluator text shown in the terminal: no escape sequences, no rich markup."""
    from agentopt.cli_progress import inert

    return inert(text)


def _version(value: bool) -> None:
    if value:
        console.print(f"agentopt {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug details to stderr.")] = False,
) -> None:
    if ctx.invoked_subcommand not in ("evolve", "resume"):
        cli_gc.resume(freeze=False)  # evolve and resume keep it paused through their imports
    import logging

    from rich.logging import RichHandler

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False, markup=False)],
    )


def _pick_run_dir(spec: Any, output: Path | None) -> Path:
    """An explicit --output that already holds a run is an error (resume it instead); the
    default folder gets a numeric suffix so re-running the README command never mixes runs."""
    from agentopt.errors import AgentoptError

    if output is not None:
        if (output / "programs.db").exists():
            raise AgentoptError(f"{output} already holds a run: continue it with `agentopt resume {output}`")
        if output.exists() and not output.is_dir():
            raise AgentoptError(f"{output} is a file, not a results folder")
        # A run that failed before its first evaluation (unreachable LLM) leaves only these.
        if output.is_dir() and {p.name for p in output.iterdir()} - {"task.json", "llm_cache.jsonl"}:
            raise AgentoptError(f"{output} is not empty and holds no run; pass a new or empty folder to --output")
        return output
    base = spec.resolved_output_dir()
    candidate, n = base, 1
    while (candidate / "programs.db").exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def _run_with_progress(
    spec: Any, run_dir: Path, iterations: int | None, quiet: bool, probes: threading.Thread | None = None
) -> Any:
    """Start or continue the run in ``run_dir`` with a live display; Ctrl-C keeps everything
    and exits 130, within a bounded time even if a clean stop does not come (cli_signals).
    ``probes`` (cli_probe) is joined first, so the sandbox never probes a second time."""
    from agentopt.cli_progress import RichReporter
    from agentopt.cli_signals import run_interruptible
    from agentopt.evolve.api import run_async

    if probes is not None:
        probes.join()

    reporter = RichReporter(console, enabled=not quiet)
    reporter.run_dir = run_dir
    cli_gc.resume(freeze=True)  # the start-up heap (everything imported) is not the loop's garbage

    def forced(why: str) -> None:
        reporter.close()
        err_console.print(
            f"[yellow]interrupted[/] ({why}): stopped at once; every evaluated program is stored; "
            f"continue with `agentopt resume {run_dir}`",
            highlight=False,
        )

    try:
        return run_interruptible(
            run_async(spec, run_dir, iterations=iterations, reporter=reporter), on_force=forced
        )
    except KeyboardInterrupt:
        reporter.close()
        err_console.print(
            f"[yellow]interrupted[/]: everything evaluated is kept; continue with `agentopt resume {run_dir}`"
        )
        raise typer.Exit(130) from None
    finally:
        reporter.close()  # also when the run aborts: the live display must not eat the error line


@app.command()
@_one_line_errors
def evolve(
    task: Annotated[Path, typer.Argument(help="task.yaml (or an OpenEvolve config.yaml).")],
    iterations: Annotated[int | None, typer.Option("--iterations", "-n", help="Override search.iterations.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Results folder (default runs/<task>).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No live progress display.")] = False,
    model: Annotated[
        str | None,
        typer.Option("--model", envvar="AGENTOPT_MODEL", help="Use this one model instead of llm.models."),
    ] = None,
    api_base: Annotated[
        str | None,
        typer.Option("--api-base", envvar="AGENTOPT_API_BASE", help="Send LLM requests to this endpoint."),
    ] = None,
) -> None:
    """Evolve the task's program and write the best one and a summary to the results folder."""
    from agentopt.cli_probe import start_sandbox_probes
    from agentopt.targets import load_any

    spec = load_any(task)
    probes = start_sandbox_probes(spec)  # they wait on subprocesses while the engine imports
    from agentopt.evolve.api import with_llm_overrides

    spec = with_llm_overrides(spec, model=model, api_base=api_base)
    _print_summary(_run_with_progress(spec, _pick_run_dir(spec, output), iterations, quiet, probes))


@app.command()
@_one_line_errors
def resume(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `agentopt evolve`.")],
    iterations: Annotated[
        int | None, typer.Option("--iterations", "-n", help="New total number of iterations.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
    model: Annotated[
        str | None,
        typer.Option("--model", envvar="AGENTOPT_MODEL", help="Continue with this one model instead."),
    ] = None,
    api_base: Annotated[
        str | None,
        typer.Option("--api-base", envvar="AGENTOPT_API_BASE", help="Send LLM requests to this endpoint."),
    ] = None,
) -> None:
    """Continue a stopped or finished run where it left off."""
    from agentopt.evolve.api import with_llm_overrides
    from agentopt.evolve.controller import load_task_snapshot

    spec = with_llm_overrides(load_task_snapshot(run_dir), model=model, api_base=api_base)
    _print_summary(_run_with_progress(spec, run_dir, iterations, quiet))


@app.command()
@_one_line_errors
def validate(
    task: Annotated[Path, typer.Argument(help="task.yaml to check.")],
    run: Annotated[
        bool, typer.Option("--run", help="Also evaluate the initial program once (exit 1 when it fails).")
    ] = False,
) -> None:
    """Check a task file: schema, paths, EVOLVE-BLOCK markers. Exit 2 with one line on error."""
    from agentopt.targets import load_any

    spec = load_any(task)
    for warning in spec.load_warnings:
        err_console.print(f"[yellow]warning:[/] {_inert(warning)}")
    console.print(
        f"[green]ok[/]: {spec.display_name} — program {spec.program.name}, evaluator {spec.evaluator.name}, "
        f"{spec.search.iterations} iterations, {spec.objective.describe()}",
        highlight=False,
    )
    if run:
        _validate_run(spec)


def _validate_run(spec: Any) -> None:
    """Evaluate the initial program once in the task's sandbox and show what came back."""
    import asyncio

    from agentopt.evolve.api import evaluate_initial
    from agentopt.evolve.health import output_tail

    result = asyncio.run(evaluate_initial(spec))
    if result.error is None:
        metrics = ", ".join(f"{k}={v:.6g}" for k, v in sorted(result.metrics.items())[:12])
        console.print(
            f"[green]ok[/]: initial program scores {spec.objective.metric} = {result.score:.6g} "
            f"in {result.wall_s:.2f}s ({_inert(metrics)})",
            highlight=False,
        )
        return
    err_console.print(
        f"[bold red]initial program failed[/] ({result.error_kind}): {_inert(result.error)}",
        highlight=False,
        soft_wrap=True,
    )
    tail = output_tail(result.stderr, result.stdout)
    if tail:
        err_console.print("guest output (last lines):", highlight=False)
        err_console.print(tail, highlight=False, markup=False, soft_wrap=True)  # output_tail made it inert
    raise typer.Exit(1)


@app.command()
def schema() -> None:
    """Print the JSON Schema of task.yaml (for editor completion)."""
    from agentopt.task import json_schema

    sys.stdout.write(json_schema() + "\n")


@app.command()
@_one_line_errors
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run folder (finished or still running).")],
    html: Annotated[
        Path | None, typer.Option("--html", help="Where to write the HTML report (default RUN_DIR/report.html).")
    ] = None,
) -> None:
    """Summarize a run in the terminal and write a self-contained HTML report (a snapshot while it runs)."""
    from agentopt.evolve.report import report_rows, write_html_report
    from agentopt.evolve.summary import read_summary

    rows, info = report_rows(run_dir)
    _print_rows(f"agentopt — {info.name}", rows)
    if info.state != "finished":
        console.print(f"[yellow]{info.state}[/]: this is a snapshot ({_inert(info.state_detail)})", highlight=False)
    finished = read_summary(run_dir)
    _print_operators(finished.operators if finished is not None else [])
    _print_failures(run_dir)
    path = write_html_report(run_dir, html or run_dir / "report.html")
    console.print(f"HTML report: {path}", highlight=False)


@app.command()
@_one_line_errors
def watch(
    path: Annotated[Path, typer.Argument(help="A run folder, or a folder of runs (e.g. runs/).")],
    port: Annotated[int, typer.Option("--port", "-p", help="Port (default: a free one).")] = 0,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on (default loopback only).")]
    = "127.0.0.1",
    open_browser: Annotated[bool, typer.Option("--open", help="Open the dashboard in a browser.")] = False,
) -> None:
    """Serve a live dashboard of a run (or of every run in a folder) in the browser; read-only."""
    from agentopt.watch.server import run_watch_cli

    raise typer.Exit(run_watch_cli(path, host, port, open_browser, lambda line: console.print(line, highlight=False)))


@app.command()
@_one_line_errors
def programs(
    run_dir: Annotated[Path, typer.Argument(help="A run folder.")],
    top: Annotated[int, typer.Option("--top", "-n", help="How many to list.")] = 20,
    failed: Annotated[bool, typer.Option("--failed", help="Only failed candidates, with their error (latest first).")]
    = False,
    island: Annotated[int | None, typer.Option("--island", help="Only programs born on this island.")] = None,
    order: Annotated[str, typer.Option("--order", help="score (best first), iteration or recent.")] = "score",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List a run's programs: best first, or failed ones with their error."""
    from agentopt.cli_inspect import list_programs

    list_programs(console, run_dir, top=top, failed=failed, island=island, order=order, as_json=as_json)


@app.command()
@_one_line_errors
def show(
    run_dir: Annotated[Path, typer.Argument(help="A run folder.")],
    program_id: Annotated[str, typer.Argument(metavar="ID", help="Program id, a unique prefix, or 'best'.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    code: Annotated[bool, typer.Option("--code/--no-code", help="Print the program's code.")] = True,
) -> None:
    """Show one program: metrics, feedback, failure reason, guest output, lineage and code."""
    from agentopt.cli_inspect import show_program

    show_program(console, run_dir, program_id, as_json=as_json, code=code)


@app.command()
@_one_line_errors
def diff(
    run_dir: Annotated[Path, typer.Argument(help="A run folder.")],
    first: Annotated[str, typer.Argument(metavar="ID1", help="Program id, prefix, or 'best'.")],
    second: Annotated[str, typer.Argument(metavar="ID2", help="Program id, prefix, or 'best'.")],
) -> None:
    """Unified diff of two programs' code (exit 1 when they differ, like diff)."""
    from agentopt.cli_inspect import diff_programs

    raise typer.Exit(diff_programs(console, run_dir, first, second))


@app.command()
@_one_line_errors
def init(
    directory: Annotated[Path, typer.Argument(help="Folder to create the new task in.")],
) -> None:
    """Create a minimal task folder (task.yaml, initial_program.py, evaluator.py) to edit."""
    from agentopt.scaffold import write_task_skeleton

    written = write_task_skeleton(directory)
    console.print(f"created {written}: edit it, then `agentopt evolve {written}`")


@app.command()
@_one_line_errors
def optimize(
    config: Annotated[Path, typer.Argument(help="Optimization config (see docs/trace.md).")],
    iterations: Annotated[int | None, typer.Option("--iterations", "-n")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o")] = None,
) -> None:
    """Optimize the Params of a traced workflow (prompts, code, numbers) against a dataset."""
    from agentopt.optim.command import run_optimize_cli

    raise typer.Exit(run_optimize_cli(config, iterations=iterations, output=output))


@app.command()
@_one_line_errors
def ci(
    task: Annotated[Path, typer.Argument(help="task.yaml whose program is gated.")],
    baseline: Annotated[Path, typer.Option("--baseline", "-b", help="Baseline JSON (commit it).")] = Path(
        "baseline.json"
    ),
    repeats: Annotated[int, typer.Option("--repeats", "-r", help="Evaluations of the program (noisy metrics).")] = 3,
    tolerance: Annotated[float, typer.Option("--tolerance", help="Absolute slack before a drop is a regression.")]
    = 0.0,
    rel_tolerance: Annotated[float, typer.Option("--rel-tolerance", help="Slack relative to the baseline mean.")]
    = 0.0,
    confidence: Annotated[float, typer.Option("--confidence", help="Bootstrap confidence level.")] = 0.95,
    budget: Annotated[
        int | None, typer.Option("--budget", help="First run a bounded search of N iterations; gate its best.")
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Run folder for --budget.")] = None,
    update_baseline: Annotated[bool, typer.Option("--update-baseline", help="Write a new baseline and exit 0.")]
    = False,
    junit: Annotated[Path | None, typer.Option("--junit", help="Also write JUnit XML here.")] = None,
    metric: Annotated[
        str | None,
        typer.Option("--metric", help="Gate on this objective of a multi-objective task (default: the primary / score)."),
    ] = None,
) -> None:
    """Gate CI: exit 1 when the program regresses against the baseline (one-line reason)."""
    from agentopt.ci import run_ci
    from agentopt.targets import load_any

    spec = load_any(task)
    code, line = run_ci(
        spec,
        baseline_path=baseline,
        repeats=repeats,
        tolerance=tolerance,
        rel_tolerance=rel_tolerance,
        confidence=confidence,
        budget=budget,
        output=output,
        update_baseline=update_baseline,
        junit=junit,
        metric=metric,
    )
    (console if code == 0 else err_console).print(_inert(line), highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@app.command("serve-model")
@_one_line_errors
def serve_model(
    name: Annotated[str, typer.Argument(help="smollm2, gemma3-270m, or a path to a .gguf file.")],
    port: Annotated[int | None, typer.Option("--port", help="Loopback port (default: a free one).")] = None,
    threads: Annotated[int, typer.Option("--threads", help="CPU threads for llama.cpp.")] = 1,
) -> None:
    """Serve a local GGUF model as an OpenAI-compatible endpoint on loopback (Ctrl-C stops it)."""
    from agentopt.llm.local_server import run_serve_model_cli

    raise typer.Exit(run_serve_model_cli(name, port, threads))


@sandbox_app.command("build")
@_one_line_errors
def sandbox_build(
    kind: Annotated[str, typer.Argument(help="cpu or cuda")] = "cpu",
    tag: Annotated[str | None, typer.Option("--tag")] = None,
    offline: Annotated[bool, typer.Option("--offline/--registry", help="Build from Debian packages (debootstrap).")]
    = True,
) -> None:
    """Build a sandbox Docker image."""
    from agentopt.sandbox.images import run_sandbox_build_cli

    raise typer.Exit(run_sandbox_build_cli(kind, tag, offline))


@import_app.command("openevolve")
@_one_line_errors
def import_openevolve(
    directory: Annotated[Path, typer.Argument(help="OpenEvolve task folder (config.yaml, initial_program.py, ...)")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing task.yaml.")] = False,
) -> None:
    """Write an equivalent, commented task.yaml beside an OpenEvolve config."""
    from agentopt.targets.openevolve import run_import_cli

    raise typer.Exit(run_import_cli(directory, force))


def _print_failures(run_dir: Path, groups_shown: int = 10, examples: int = 3, tail_lines: int = 8) -> None:
    """Failure reasons grouped with counts, and the guest's last output for the top groups."""
    from rich.table import Table

    from agentopt.evolve.runview import RunView

    view = RunView(run_dir)
    try:
        groups = view.failure_groups()
    finally:
        view.close()
    if not groups:
        return
    table = Table(title="why candidates failed (grouped)", title_justify="left")
    for column in ("count", "where", "kind", "reason", "example"):
        table.add_column(column)
    for g in groups[:groups_shown]:
        table.add_row(str(g.count), g.source, _inert(g.kind), _inert(g.reason), f"iteration {g.example_iteration}")
    console.print(table)
    if len(groups) > groups_shown:
        console.print(f"({len(groups) - groups_shown} more reasons in the HTML report)", highlight=False)
    for g in [g for g in groups if g.source == "evaluation" and g.example_output][:examples]:
        lines = [line for line in g.example_output.splitlines() if line.strip()][-tail_lines:]
        console.print(f"[bold]iteration {g.example_iteration}[/] ({_inert(g.kind)}): {_inert(g.example_error[:300])}",
                      highlight=False)
        for line in lines:
            console.print("  " + line, markup=False, highlight=False)  # output_tail is already inert


def _print_rows(title: str, rows: list[tuple[str, str]]) -> None:
    from rich.table import Table

    table = Table(title=_inert(title), show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for label, value in rows:
        table.add_row(label, _inert(value))
    console.print(table)


def _print_operators(operators: list[Any]) -> None:
    """The per-operator table (summary.json's ``operators``), when there is one."""
    if not operators:
        return
    from rich import box
    from rich.table import Table

    from agentopt.evolve.operator_stats import operator_table

    header, rows = operator_table(operators)
    ops = Table(
        title="children per operator", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
        collapse_padding=True, show_edge=False,
    )  # fmt: skip
    widest = max(len(row[0]) for row in rows)
    ops.add_column(header[0], min_width=min(widest, 16), overflow="fold")  # names fold, never cut
    for name in header[1:]:
        ops.add_column(name.replace(" ", "\n"), justify="right", no_wrap=True)
    for row in rows:
        ops.add_row(*(_inert(cell) for cell in row))
    console.print(ops)


def _print_front(front: Any) -> None:
    """Several objectives: the final Pareto front (summary.json's ``front``), best scalar first."""
    if front is None:
        return
    from rich import box
    from rich.table import Table

    from agentopt.evolve.front import FRONT_SHOWN, front_table

    header, rows = front_table(front, limit=FRONT_SHOWN)
    more = len(front.members) - len(rows)
    title = f"Pareto front by {front.ranked_by}" + (f" (best {len(rows)}; {more} more in summary.json)" if more > 0 else "")
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for i, name in enumerate(header):
        table.add_column(name, justify="right" if i != len(header) - 2 else "left", no_wrap=True)
    for row in rows:
        table.add_row(*(_inert(cell) for cell in row))
    console.print(table)


def _print_summary(summary: Any) -> None:
    from agentopt.evolve.summary import summary_rows

    _print_rows(f"agentopt — {summary.task}", summary_rows(summary))
    _print_operators(summary.operators)
    _print_front(summary.front)
    console.print(f"results: {summary.run_dir}  (best program: {summary.best_program_path})", highlight=False)


def main() -> None:
    """Console-script entry point. Ctrl-C outside a run (while starting up) exits 130 quietly."""
    cli_gc.pause_for_start_up()  # resumed by the command (see _root), frozen-first by a run
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        raise SystemExit(130) from None
    finally:
        cli_gc.leave_heap_to_os()


if __name__ == "__main__":  # pragma: no cover
    main()
