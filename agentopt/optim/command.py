"""``agentopt optimize``: a plain function the CLI registers (kept Typer-free for reuse/tests)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from agentopt.errors import AgentoptError
from agentopt.optim.config import load_config
from agentopt.optim.runner import optimize


def run_optimize_cli(config_path: Path, *, iterations: int | None, output: Path | None) -> int:
    """Run the optimize loop for ``config_path``; print a summary; return the exit code.

    User errors (bad config, no model, unreachable model) print ``error: <one line>`` and
    return the error's exit code (2) instead of raising.
    """
    console = Console(stderr=True)
    try:
        cfg = load_config(config_path)
        if iterations is not None:
            if iterations < 0:
                raise AgentoptError("--iterations must be >= 0")
            cfg.iterations = iterations
        if output is not None:
            cfg.output_dir = output.resolve()
        result = optimize(cfg, console=console)
    except AgentoptError as err:
        console.print(f"[red]error:[/red] {err}", markup=True, highlight=False, soft_wrap=True)
        return err.exit_code
    table = Table(title=f"optimize {cfg.display_name()} ({cfg.optimizer.kind})")
    table.add_column("baseline", justify="right")
    table.add_column("best", justify="right")
    table.add_column("best iteration", justify="right")
    table.add_column("output")
    table.add_row(f"{result.baseline:.4g}", f"{result.best:.4g}", str(result.best_iteration), str(result.output_dir))
    Console().print(table)
    return 0
