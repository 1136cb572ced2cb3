"""A read-only view of a run folder, safe to use while the run is writing.

``agentopt watch``, ``programs``, ``show``, ``diff`` and the HTML report read a run through
:class:`RunView` instead of :class:`~agentopt.evolve.db.ProgramDB` because they must never
disturb a live run: the store is opened with a ``mode=ro`` SQLite URI (so no schema upgrade,
no checkpoint, no lock beyond a WAL read snapshot), and nothing needs ``task.json``'s program
and evaluator files to still exist.

Costs stay bounded on big runs (100k programs): lists are paginated in SQL, the score chart
is aggregated in SQL (steps of the best-so-far line; a 2-D histogram instead of 100k dots),
and the few aggregates that need the compressed ``data`` blob (failure reasons, per-operator
counts) or the in-memory MAP-Elites replay are kept incrementally: the store is append-only,
so each refresh reads only rows past the last ``seq`` seen.
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import re
import sqlite3
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from agentopt.errors import AgentoptError
from agentopt.evolve.db import (
    FORMAT_NAME,
    Program,
    _unpack,
    objective_directions,
    objective_vectors,
    read_objective_points,
    replay_into,
    selection_params,
)
from agentopt.evolve.failures import FailureGroup as ReasonGroup
from agentopt.evolve.failures import group_failures, normalize_reason, used_llm
from agentopt.evolve.front import FrontSummary, ObjectivePoint, front_summary
from agentopt.evolve.operator_stats import operator_name
from agentopt.evolve.selection import Population
from agentopt.task import Objective, SearchSpec

log = logging.getLogger(__name__)

DB_NAME = "programs.db"
WARM_CHUNK = 1000  # rows folded per lock hold by the background warm-up
RUNNING_WINDOW_S = 120.0  # a store written to within this long, with no newer summary, is "running"
SUMMARY_SLACK_S = 5.0  # the final checkpoint after summary.json may land a little later
ORDER_SQL = {"iteration": "p.iteration, p.seq", "recent": "p.seq DESC"}


class RunViewError(AgentoptError):
    """The folder is not a readable agentopt run (or a program id is unknown)."""


class ProgramRow(BaseModel):
    """One line of a program list (hot columns only: no code, no data blob)."""

    id: str
    parent_id: str | None
    iteration: int
    generation: int
    island: int
    score: float | None
    ok: bool
    error: str | None = None


class RunInfo(BaseModel):
    """What the dashboard header, `agentopt watch runs/` and a running `report` show."""

    run_dir: str
    name: str
    metric: str
    direction: str
    state: str  # running | finished | stopped
    state_detail: str
    programs: int
    ok: int
    failed: int
    best_score: float | None
    best_id: str | None
    best_iteration: int | None
    initial_score: float | None
    next_iteration: int
    target_iterations: int | None
    rejected_replies: int
    llm_calls: int
    cost_usd: float
    last_write_age_s: float
    indexing: bool = False  # the background warm-up of failure/operator/grid tallies is still going


@dataclass
class ScoreSeries:
    """Score-over-iterations data, aggregated in SQL so its size does not grow with the run."""

    x_range: tuple[float, float]
    y_range: tuple[float, float]
    best_steps: list[tuple[int, float]]  # (iteration, best so far) where the best changed
    points: list[tuple[int, float]] = field(default_factory=list)  # every candidate (small runs)
    density: list[tuple[int, int, int]] = field(default_factory=list)  # (x bin, y bin, count)
    bins: tuple[int, int] = (0, 0)
    count: int = 0
    step_ids: list[str] = field(default_factory=list)  # the program that set each best_steps entry


@dataclass
class GridView:
    """One island's MAP-Elites grid: occupied cells and the axes' current ranges."""

    island: int
    dims: tuple[str, ...]
    bins: tuple[int, ...]
    lo: list[float]
    hi: list[float]
    cells: dict[tuple[int, ...], tuple[str, float]]  # cell -> (elite id, score)
    members: int


@dataclass
class OperatorStats:
    children: int = 0
    failed: int = 0
    improved: int = 0  # better than its parent
    new_best: int = 0  # better than every program before it


@dataclass
class FailureGroup:
    reason: str
    count: int
    example_ids: list[str]  # first few programs that failed this way
    last_iteration: int


def failure_reason(data: dict[str, Any]) -> str:
    """Group key of a failed program for the dashboard's tallies: its error kind and
    :func:`~agentopt.evolve.failures.normalize_reason` of its error (the report's key too)."""
    reason = normalize_reason(str(data.get("error") or "no score"))
    kind = data.get("error_kind")
    return f"{kind}: {reason}" if kind and not reason.startswith(str(kind)) else reason


def operator_of(mutation: dict[str, Any]) -> str:
    """The operator that made a child, named exactly as the run summary names it."""
    return operator_name(mutation)


def unified_diff(old: str, new: str, old_name: str, new_name: str) -> list[str]:
    return list(difflib.unified_diff(old.splitlines(), new.splitlines(), old_name, new_name, lineterm=""))


class RunView:
    """Read-only queries over one run folder; thread-safe (one SQLite connection per thread)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.db_path = self.run_dir / DB_NAME
        if not self.db_path.is_file():
            raise RunViewError(f"{self.run_dir}: no {DB_NAME} (not a run folder, or the run never started)")
        self._local = threading.local()
        self._lock = threading.Lock()
        meta = dict(self._q("SELECT key, value FROM meta"))
        if meta.get("format") != FORMAT_NAME:
            raise RunViewError(f"{self.db_path}: not an agentopt program database")
        self.objective = Objective.model_validate_json(meta["objective"])
        self.search = SearchSpec.model_validate_json(meta["search"])
        self.maximize = self.objective.direction == "maximize"
        self.columns = {row[1] for row in self._q("PRAGMA table_info(programs)")}
        self.task = self._task_json()
        # Incremental aggregates (guarded by _lock): everything up to _agg_seq is counted.
        self._agg_seq = 0
        self._warmer: threading.Thread | None = None
        self._series_cache: tuple[Any, ScoreSeries] | None = None
        self._counts_cache: tuple[Any, dict[str, Any]] | None = None
        self._ops: dict[str, OperatorStats] = {}
        self._fails: dict[str, FailureGroup] = {}
        self._best_so_far: float | None = None
        self._pop: Population | None = None
        self._pop_seq = 0
        self._pop_ord = 0

    # ------------------------------------------------------------------ plumbing
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            uri = self.db_path.resolve().as_uri() + "?mode=ro"
            try:
                conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA busy_timeout = 5000")
                conn.execute("PRAGMA query_only = 1")
            except sqlite3.Error as err:
                raise RunViewError(f"{self.db_path}: cannot open read-only ({err})") from None
            self._local.conn = conn
        return conn

    def _q(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._conn().execute(sql, params).fetchall()
        except sqlite3.DatabaseError as err:
            raise RunViewError(f"{self.db_path}: not readable as an agentopt run ({err})") from None

    def _task_json(self) -> dict[str, Any]:
        path = self.run_dir / "task.json"
        try:
            return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        except (OSError, ValueError):
            return {}

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def state(self, key: str, default: Any = None) -> Any:
        """A controller state value (JSON), e.g. the meta-prompt archive."""
        rows = self._q("SELECT value FROM state WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else default

    def _better(self, a: float, b: float) -> bool:
        return a > b if self.maximize else a < b

    # ------------------------------------------------------------------ overview
    def _store_key(self) -> tuple[Any, ...]:
        """Changes whenever the run writes a program, a rejection, an LLM call or its progress:
        four O(log n) lookups (rowid maxima), so a status poll of an idle store costs ~nothing."""
        return self._q(
            "SELECT (SELECT MAX(seq) FROM programs), (SELECT MAX(seq) FROM rejections),"
            " (SELECT MAX(seq) FROM llm_calls), (SELECT value FROM state WHERE key = 'next_iteration')"
        )[0]

    def _counts(self) -> dict[str, Any]:
        """The aggregate part of :meth:`info` (table scans at 100k rows), cached per store key."""
        key = self._store_key()
        cached = self._counts_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        n, ok = self._q("SELECT COUNT(*), COALESCE(SUM(rankable), 0) FROM programs")[0]
        agg = "MAX" if self.maximize else "MIN"
        best_rows = self._q(
            f"SELECT id, iteration, score FROM programs WHERE rankable AND score = "
            f"(SELECT {agg}(score) FROM programs WHERE rankable) ORDER BY iteration, seq LIMIT 1"
        )
        first = self._q("SELECT score FROM programs ORDER BY seq LIMIT 1")
        (rejected,) = self._q("SELECT COUNT(*) FROM rejections")[0]
        calls, cost = self._q(
            "SELECT COUNT(*), COALESCE(SUM(json_extract(data, '$.cost_usd')), 0) FROM llm_calls"
        )[0]
        best = best_rows[0] if best_rows else (None, None, None)
        counts = {
            "programs": n, "ok": ok, "failed": n - ok, "best_id": best[0], "best_iteration": best[1],
            "best_score": best[2], "initial_score": first[0][0] if first else None,
            "next_iteration": int(json.loads(key[3]) or 0) if key[3] is not None else 0,
            "rejected_replies": rejected, "llm_calls": calls, "cost_usd": float(cost or 0.0),
        }  # fmt: skip
        self._counts_cache = (key, counts)
        return counts

    def info(self) -> RunInfo:
        """Counts, best program and run state (no blobs read; the counts are cached until the
        store changes, the state is recomputed from file times on every call)."""
        state, detail, age = self._run_state()
        target = (self.task.get("search") or {}).get("iterations")
        return RunInfo(
            run_dir=str(self.run_dir),
            name=str(self.task.get("name") or self.run_dir.name),
            metric=self.objective.metric,
            direction=self.objective.direction,
            state=state,
            state_detail=detail,
            target_iterations=int(target) if isinstance(target, int) else None,
            last_write_age_s=age,
            indexing=self.indexing,
            **self._counts(),
        )

    def _run_state(self) -> tuple[str, str, float]:
        """running / finished / stopped, from file times: the controller writes summary.json
        when a run ends (also on Ctrl-C); a store written since then is a run in progress."""
        now = time.time()
        last = self.db_path.stat().st_mtime  # checkpoints move it; readers never do
        wal = self.db_path.with_name(DB_NAME + "-wal")
        try:
            st = wal.stat()
            if st.st_size > 0:  # an empty WAL is what a reader (like this one) leaves behind
                last = max(last, st.st_mtime)
        except OSError:
            pass
        age = max(0.0, now - last)
        summary = self.run_dir / "summary.json"
        # The run's last act is summary.json, then closing the store (a final checkpoint).
        if summary.is_file() and summary.stat().st_mtime >= last - SUMMARY_SLACK_S:
            try:
                reason = json.loads(summary.read_text(encoding="utf-8")).get("stop_reason") or "done"
            except (OSError, ValueError):
                reason = "done"
            return "finished", str(reason), age
        if age <= RUNNING_WINDOW_S:
            return "running", f"last write {age:.0f} s ago", age
        return "stopped", f"no summary and no write for {age / 60:.0f} min (killed? `agentopt resume` continues it)", age

    # ------------------------------------------------------------------ lists
    def programs(
        self,
        *,
        order: str = "score",
        failed: bool = False,
        island: int | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[ProgramRow], int]:
        """One page of programs and the total matching. ``order``: score (best first; failed
        ones last by iteration), iteration, or recent. Error text is read for the page only."""
        where, params = [], []
        if failed:
            where.append("NOT p.rankable")
        if island is not None:
            where.append("p.island = ?")
            params.append(island)
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        if order == "score":
            sort = f"p.rankable DESC, p.score {'DESC' if self.maximize else 'ASC'}, p.iteration, p.seq"
        elif order in ORDER_SQL:
            sort = ORDER_SQL[order]
        else:
            raise RunViewError(f"unknown order {order!r} (score, iteration, recent)")
        (total,) = self._q(f"SELECT COUNT(*) FROM programs p{clause}", params)[0]
        rows = self._q(
            "SELECT p.id, p.parent_id, p.iteration, p.generation, p.island, p.score, p.rankable, p.data"
            f" FROM programs p{clause} ORDER BY {sort} LIMIT ? OFFSET ?",
            [*params, max(0, limit), max(0, offset)],
        )
        out = []
        for pid, parent, it, gen, isl, score, rankable, data in rows:
            error = None if rankable else (_unpack(data).get("error") or "no score")
            out.append(ProgramRow(
                id=pid, parent_id=parent, iteration=it, generation=gen, island=isl,
                score=score, ok=bool(rankable), error=error,
            ))  # fmt: skip
        return out, total

    def objective_values(self, ids: list[str]) -> dict[str, dict[str, float]]:
        """Several objectives: program id -> {metric: value} for ``ids`` (one page; {} otherwise)."""
        if not self.objective.is_multi or not ids:
            return {}
        marks = ",".join("?" * len(ids))
        out: dict[str, dict[str, float]] = {}
        for pid, name, value in self._q(
            f"SELECT p.id, v.metric, v.value FROM programs p JOIN metric_values v ON v.seq = p.seq WHERE p.id IN ({marks})",
            ids,
        ):
            out.setdefault(pid, {})[name] = value
        return out

    def count_before(self, iteration: int, *, failed: bool = False, island: int | None = None) -> int:
        """Programs (matching the list filters) before ``iteration``: the offset of its page."""
        where, params = ["iteration < ?"], [iteration]
        if failed:
            where.append("NOT rankable")
        if island is not None:
            where.append("island = ?")
            params.append(island)
        return int(self._q("SELECT COUNT(*) FROM programs WHERE " + " AND ".join(where), params)[0][0])

    # ------------------------------------------------------------------ one program
    def resolve_id(self, ref: str) -> str:
        """A full id, a unique id prefix (>= 4 hex chars) or ``best``."""
        ref = ref.strip()
        if ref == "best":
            best = self.info().best_id
            if best is None:
                raise RunViewError(f"{self.run_dir}: no successful program yet")
            return best
        if not re.fullmatch(r"[0-9a-fA-F]{4,64}", ref):
            raise RunViewError(f"{ref!r} is not a program id (hex, at least 4 characters, or 'best')")
        ref = ref.lower()
        rows = self._q("SELECT id FROM programs WHERE id >= ? AND id < ? ORDER BY id LIMIT 2", (ref, ref + "g"))
        if not rows:
            raise RunViewError(f"{self.run_dir}: no program with id {ref}")
        if len(rows) > 1:
            raise RunViewError(f"program id prefix {ref} is ambiguous ({rows[0][0]}, {rows[1][0]}, ...)")
        return rows[0][0]

    def program(self, ref: str) -> Program:
        pid = self.resolve_id(ref)
        rows = self._q(
            "SELECT p.id, p.parent_id, p.iteration, p.generation, p.island, p.code_hash, p.norm_hash, p.data,"
            " b.code FROM programs p JOIN blobs b ON b.id = p.blob WHERE p.id = ?",
            (pid,),
        )
        pid, parent, it, gen, isl, code_hash, norm_hash, data, code = rows[0]
        fields = {k: v for k, v in _unpack(data).items() if k in Program.model_fields}
        if "output_tail" in Program.model_fields and "output_tail" not in fields:
            fields["output_tail"] = self.output_tail(pid)
        return Program.model_construct(
            id=pid, parent_id=parent, iteration=it, generation=gen, island=isl, code_hash=code_hash,
            norm_hash=norm_hash, code=zlib.decompress(code).decode("utf-8", "replace"), **fields,
        )  # fmt: skip

    def output_tail(self, program_id: str) -> str:
        """The guest's stderr tail of a failed candidate, where the store keeps one (newer
        stores: an ``output_tail`` column or data field; empty otherwise)."""
        if "output_tail" in self.columns:
            rows = self._q("SELECT output_tail FROM programs WHERE id = ?", (program_id,))
            if rows and rows[0][0]:
                return str(rows[0][0])
        rows = self._q("SELECT data FROM programs WHERE id = ?", (program_id,))
        return str(_unpack(rows[0][0]).get("output_tail") or "") if rows else ""

    def lineage(self, program_id: str, limit: int = 10_000) -> list[ProgramRow]:
        """Ancestors of ``program_id``, root first (one indexed lookup per step, cycle-safe)."""
        chain: list[ProgramRow] = []
        seen: set[str] = set()
        pid: str | None = program_id
        while pid and pid not in seen and len(chain) < limit:
            seen.add(pid)
            rows = self._q(
                "SELECT id, parent_id, iteration, generation, island, score, rankable FROM programs WHERE id = ?",
                (pid,),
            )
            if not rows:
                break
            i, parent, it, gen, isl, score, rankable = rows[0]
            chain.append(ProgramRow(
                id=i, parent_id=parent, iteration=it, generation=gen, island=isl, score=score, ok=bool(rankable)
            ))  # fmt: skip
            pid = parent
        chain.reverse()
        return chain

    def children_count(self, program_id: str) -> int:
        return int(self._q("SELECT COUNT(*) FROM programs WHERE parent_id = ?", (program_id,))[0][0])

    # ------------------------------------------------------------------ charts
    def score_series(self, *, max_points: int = 4000, bins: tuple[int, int] = (160, 60)) -> ScoreSeries:
        """Best-so-far steps (SQL window function) plus every candidate: as points when there
        are at most ``max_points``, else as counts on a ``bins`` grid (GROUP BY in SQL).
        Cached until the store grows (the last ``seq`` is an O(1) rowid lookup)."""
        (last,) = self._q("SELECT MAX(seq) FROM programs")[0]
        key = (last, max_points, bins)
        cached = self._series_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        series = self._score_series(max_points, bins)
        self._series_cache = (key, series)
        return series

    def _score_series(self, max_points: int, bins: tuple[int, int]) -> ScoreSeries:
        agg = "MAX" if self.maximize else "MIN"
        n, x0, x1, y0, y1 = self._q(
            "SELECT COUNT(*), MIN(iteration), MAX(iteration), MIN(score), MAX(score) FROM programs WHERE rankable"
        )[0]
        if not n:
            return ScoreSeries((0, 1), (0, 1), [])
        # Per iteration its best candidate (SQLite returns the bare ``id`` column from the row
        # that holds the MAX/MIN), then the running best by a window; a step is where it changes.
        steps_sql = (
            f"SELECT iteration, best, id FROM (SELECT iteration, id, best, LAG(best) OVER (ORDER BY iteration) AS prev"
            f" FROM (SELECT iteration, id, s, {agg}(s) OVER (ORDER BY iteration) AS best"
            f" FROM (SELECT iteration, {agg}(score) AS s, id FROM programs WHERE rankable GROUP BY iteration)))"
            f" WHERE prev IS NULL OR best != prev ORDER BY iteration"
        )
        rows = self._q(steps_sql)
        steps = [(int(i), float(b)) for i, b, _ in rows]
        series = ScoreSeries((x0, x1), (y0, y1), steps, count=n, step_ids=[str(pid) for _, _, pid in rows])
        if n <= max_points:
            series.points = [
                (int(i), float(s)) for i, s in self._q("SELECT iteration, score FROM programs WHERE rankable ORDER BY seq")
            ]
            return series
        nx, ny = bins
        xs, ys = max(x1 - x0, 1), (y1 - y0) or 1.0
        series.bins = bins
        series.density = [
            (int(bx), int(by), int(c))
            for bx, by, c in self._q(
                "SELECT MIN(CAST((iteration - ?) * ? / ? AS INTEGER), ?) AS bx,"
                " MIN(CAST((score - ?) * ? / ? AS INTEGER), ?) AS by, COUNT(*)"
                " FROM programs WHERE rankable GROUP BY bx, by",
                (x0, nx, float(xs), nx - 1, y0, ny, float(ys), ny - 1),
            )
        ]
        return series

    # ------------------------------------------------------------------ incremental aggregates
    def _catch_up(self, limit: int = -1) -> bool:
        """Fold rows stored since the last call (at most ``limit``; -1: all) into the failure
        and operator tallies. True when nothing is left to fold."""
        rows = self._q(
            "SELECT c.seq, c.id, c.iteration, c.parent_id IS NOT NULL, c.rankable, c.score, p.score, c.data"
            " FROM programs c LEFT JOIN programs p ON p.id = c.parent_id WHERE c.seq > ? ORDER BY c.seq LIMIT ?",
            (self._agg_seq, limit),
        )
        for seq, pid, iteration, has_parent, rankable, score, parent_score, data in rows:
            fields = _unpack(data)
            if not rankable and not (fields.get("mutation") or {}).get("cache_hit"):
                reason = failure_reason(fields)
                group = self._fails.get(reason)
                if group is None:
                    group = self._fails[reason] = FailureGroup(reason, 0, [], iteration)
                group.count += 1
                group.last_iteration = max(group.last_iteration, iteration)
                if len(group.example_ids) < 5:
                    group.example_ids.append(pid)
            new_best = bool(rankable) and (self._best_so_far is None or self._better(score, self._best_so_far))
            if new_best:
                self._best_so_far = score
            if has_parent:
                stats = self._ops.setdefault(operator_of(fields.get("mutation") or {}), OperatorStats())
                stats.children += 1
                stats.failed += 0 if rankable else 1
                if rankable and (parent_score is None or self._better(score, parent_score)):
                    stats.improved += 1
                stats.new_best += 1 if new_best else 0
            self._agg_seq = seq
        return limit < 0 or len(rows) < limit

    def start_warming(self, chunk: int = WARM_CHUNK) -> None:
        """Fold the whole store into the tallies and the grid replay on a background thread, a
        chunk at a time, so a page of a 100k-program run never waits for it: until it is done,
        ``failures``/``operators``/``grids`` with ``wait=False`` answer from what is folded so far."""
        if self._warmer is not None:
            return

        def warm() -> None:
            try:
                done = False
                while not done:
                    with self._lock:
                        done = self._catch_up(chunk)
                with self._lock:
                    self._follow_population()
            except Exception:  # a failure here must not kill the server; pages then fold inline
                log.debug("runview: warm-up failed", exc_info=True)

        self._warmer = threading.Thread(target=warm, name=f"agentopt-watch-warm-{self.run_dir.name}", daemon=True)
        self._warmer.start()

    @property
    def indexing(self) -> bool:
        return self._warmer is not None and self._warmer.is_alive()

    def folded(self) -> int:
        """How many stored programs the tallies cover (for the 'counting…' note)."""
        return int(self._q("SELECT COUNT(*) FROM programs WHERE seq <= ?", (self._agg_seq,))[0][0])

    def failures(self, *, wait: bool = True) -> list[FailureGroup]:
        """Failed candidates grouped by reason, most frequent first. ``wait=False`` during the
        warm-up: the groups folded so far."""
        with self._lock:
            if wait or not self.indexing:
                self._catch_up()
            groups = [FailureGroup(g.reason, g.count, list(g.example_ids), g.last_iteration) for g in self._fails.values()]
        return sorted(groups, key=lambda g: (-g.count, g.reason))

    def operators(self, *, wait: bool = True) -> dict[str, OperatorStats]:
        """Children, failures, improvements over the parent and new bests, per operator."""
        with self._lock:
            if wait or not self.indexing:
                self._catch_up()
            return {k: OperatorStats(**vars(v)) for k, v in sorted(self._ops.items())}

    def failed_programs(self) -> list[Program]:
        """Every failed program without its code (error, kind, mutation, output tail): what
        :func:`~agentopt.evolve.failures.group_failures` needs, read for failed rows only."""
        tail = ", p.output_tail" if "output_tail" in self.columns else ", NULL"
        out = []
        for pid, parent, it, gen, isl, data, output in self._q(
            f"SELECT p.id, p.parent_id, p.iteration, p.generation, p.island, p.data{tail}"
            " FROM programs p WHERE NOT p.rankable ORDER BY p.seq"
        ):
            fields = {k: v for k, v in _unpack(data).items() if k in Program.model_fields}
            if "output_tail" in Program.model_fields:
                fields.setdefault("output_tail", output or "")
            out.append(Program.model_construct(
                id=pid, code="", parent_id=parent, iteration=it, generation=gen, island=isl, **fields
            ))  # fmt: skip
        return out

    def failure_groups(self) -> list[ReasonGroup]:
        """Failures and rejected children grouped by reason with one example each (error and
        guest output): `agentopt report`'s table and the HTML report's section."""
        rejected = [
            {"iteration": i, "parent_id": p, "reason": r, "reply_excerpt": e}
            for i, p, r, e in self._q("SELECT iteration, parent_id, reason, reply_excerpt FROM rejections ORDER BY seq")
        ]
        return group_failures(self.failed_programs(), rejected, llm=used_llm(self.run_dir))

    def rejections(self, limit: int = 3) -> list[tuple[str, int, list[tuple[int, str]]]]:
        """Rejected LLM replies grouped by reason (SQL GROUP BY) with the latest excerpts."""
        out = []
        for reason, count in self._q(
            "SELECT reason, COUNT(*) AS n FROM rejections GROUP BY reason ORDER BY n DESC, reason LIMIT 100"
        ):
            examples = self._q(
                "SELECT iteration, reply_excerpt FROM rejections WHERE reason = ? ORDER BY seq DESC LIMIT ?",
                (reason, limit),
            )
            out.append((reason, count, [(int(i), str(e)) for i, e in examples]))
        return out

    def llm_usage(self) -> list[dict[str, Any]]:
        """LLM calls, cached calls, errors, tokens and cost per model (SQL GROUP BY)."""
        rows = self._q(
            "SELECT json_extract(data, '$.model') AS m, COUNT(*),"
            " SUM(COALESCE(json_extract(data, '$.cached'), 0)),"
            " SUM(json_extract(data, '$.error') IS NOT NULL),"
            " SUM(COALESCE(json_extract(data, '$.prompt_tokens'), 0) + COALESCE(json_extract(data, '$.completion_tokens'), 0)),"
            " SUM(COALESCE(json_extract(data, '$.cost_usd'), 0))"
            " FROM llm_calls GROUP BY m ORDER BY m"
        )
        keys = ("model", "calls", "cached", "errors", "tokens", "cost_usd")
        return [dict(zip(keys, (m or "?", c, int(ca or 0), int(e or 0), int(t or 0), float(u or 0)), strict=True))
                for m, c, ca, e, t, u in rows]  # fmt: skip

    def grids(self, *, wait: bool = True) -> list[GridView] | None:
        """Each island's MAP-Elites grid, from the same replay the engine does on resume,
        kept up to date incrementally (new programs and migrations since the last call).
        None with ``wait=False`` while the warm-up has not replayed the store yet."""
        with self._lock:
            if not wait and self.indexing:
                return None
            self._follow_population()
            pop = self._pop
            assert pop is not None
            dims = tuple(self.search.feature_dimensions)
            out = []
            for island in pop.islands:
                cells = {}
                for cell, seq in island.grid.items():
                    rec = pop.records[seq]
                    key = rec.key
                    assert key is not None
                    cells[cell] = (rec.pid, -key[0] if self.maximize else key[0])
                out.append(GridView(
                    island.index, dims, island.mapper.bins, list(island.mapper.lo), list(island.mapper.hi),
                    cells, len(island.members),
                ))  # fmt: skip
            return out

    def objective_points(self) -> list[ObjectivePoint]:
        """Several objectives: every valid program's objective vector (empty otherwise)."""
        try:
            return read_objective_points(self._conn(), self.objective)
        except sqlite3.DatabaseError as err:
            raise RunViewError(f"{self.db_path}: not readable as an agentopt run ({err})") from None

    def front(self, points: list[ObjectivePoint] | None = None, *, history: bool = True) -> FrontSummary | None:
        """Several objectives: the run's Pareto front now (as the summary reports it; ``history``:
        with the hypervolume history); None otherwise."""
        if not self.objective.is_multi:
            return None
        return front_summary(self.objective_points() if points is None else points, self.objective, history=history)

    def _follow_population(self) -> None:
        if self._pop is None:
            directions = objective_directions(self.objective)
            self._pop = Population(selection_params(self.search), self.objective.direction, directions)
        conn = self._conn()
        conn.execute("BEGIN")  # one snapshot for programs and migrations
        try:
            moves = conn.execute(
                "SELECT ord, epoch, after_seq, program_seq, to_island FROM migrations WHERE ord > ? ORDER BY ord",
                (self._pop_ord,),
            ).fetchall()
            rows = conn.execute(
                "SELECT seq, id, iteration, island, score, rankable, features FROM programs WHERE seq > ? ORDER BY seq",
                (self._pop_seq,),
            ).fetchall()
            vectors = objective_vectors(conn, self.objective, self._pop_seq)
        finally:
            conn.execute("COMMIT")
        if moves:
            self._pop_ord = moves[-1][0]
        _, last = replay_into(self._pop, [m[1:] for m in moves], rows, self.objective.direction, vectors)
        if last is not None:
            self._pop_seq = last


def format_score(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.6g}"


def find_runs(folder: Path) -> list[Path]:
    """Run folders directly in ``folder`` (or ``folder`` itself), sorted by name."""
    folder = Path(folder)
    if (folder / DB_NAME).is_file():
        return [folder]
    if not folder.is_dir():
        raise RunViewError(f"{folder}: no such folder")
    return sorted(p for p in folder.iterdir() if (p / DB_NAME).is_file())


__all__ = [
    "FailureGroup", "GridView", "OperatorStats", "ProgramRow", "RunInfo", "RunView", "RunViewError",
    "ScoreSeries", "failure_reason", "find_runs", "format_score", "operator_of", "unified_diff",
]  # fmt: skip
