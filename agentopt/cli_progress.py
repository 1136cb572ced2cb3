"""Live progress for `agentopt evolve`: a rich progress bar with best score, evals/s, failures."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from agentopt.textsafe import strip_control

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress


def inert(text: str) -> str:
    """Untrusted text (candidate output, evaluator feedback) made safe for the terminal: control
    and escape sequences stripped, rich markup escaped."""
    return escape(strip_control(text))


class RichReporter:
    """Implements the controller's Reporter protocol with a rich Progress display."""

    def __init__(self, console: Console, *, enabled: bool = True) -> None:
        self.console = console
        self.enabled = enabled
        self.run_dir: Path | None = None
        self._progress: Progress | None = None
        self._task_id: Any = None
        self._best: float | None = None
        self._done = 0

    def start(self, *, total: int, done: int, mutator: str) -> None:
        self.console.print(f"[bold]agentopt[/] evolving with [cyan]{escape(mutator)}[/] → {self.run_dir}", highlight=False)
        self._done = done
        if not self.enabled:
            return
        # deferred: rich.progress (live display, spinners, ~15 ms) is needed only with a display
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]iter[/]"),
            MofNCompleteColumn(),
            BarColumn(),
            TextColumn("best [green]{task.fields[best]}[/]"),
            TextColumn("{task.fields[rate]} eval/s"),
            TextColumn("fail {task.fields[failures]}"),
            TextColumn("cache {task.fields[hits]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self._progress.start()
        self._task_id = self._progress.add_task(
            "evolve", total=total, completed=done, best="—", rate="0.0", failures=0, hits=0
        )

    def message(self, text: str) -> None:
        self.console.print(inert(text), highlight=False)

    def update(self, *, iteration: int, program: Any, best: Any, stats: Any) -> None:
        """One finished iteration: ``program`` is None when the child was rejected (a reply or
        mutation that produced no program), which still advances the bar."""
        best_score = best.score if best is not None else None
        if best_score is not None and best_score != self._best and self._best is not None:
            # Printed above the live bar in a terminal, as a plain line otherwise.
            self.console.print(f"iteration {iteration}: new best {best_score:.6g}", highlight=False)
        self._best = best_score
        self._done = max(self._done, iteration)
        if self._progress is None:
            return
        self._progress.update(
            self._task_id,
            completed=self._done,
            best="—" if best_score is None else f"{best_score:.6g}",
            rate=f"{stats.evals_per_s():.1f}",
            failures=stats.failures,
            hits=stats.cache_hits,
        )

    def finish(self, summary: Any) -> None:
        self.close()

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
