"""The program database: an append-only SQLite store plus in-memory selection indexes.

Storage (one file, WAL journal):

- ``programs``: one row per evaluated program. Hot columns (id, iteration, island, score,
  hashes, raw features) are plain columns; everything else (metrics, feedback, artifacts,
  mutation, ...) is one JSON blob, zlib-compressed when that pays, so a row costs little
  beyond its text.
- ``blobs``: program source, zlib-compressed, stored once per distinct source text and
  shared by every program (and cache hit) with that text; no per-program code copies.
- ``migrations``: each island migration as ordered ``(program, destination)`` moves, with
  the insertion point (``after_seq``) at which it happened.
- ``metric_values`` (runs with several objectives only): ``(seq, metric, value)`` for each
  objective metric a program reported, so fronts and scatters are one indexed query and a
  reopen rebuilds each island's Pareto front without reading blobs. A single-objective run
  has no such table (its file is exactly what it always was).
- ``meta`` (format, schema version, the run's objective/search settings), ``state``
  (controller JSON values), ``llm_calls``, ``rejections``.

Durability: every write commits before the call returns, except inside :meth:`ProgramDB.batch`
(one synchronous step of the controller), whose writes commit together when the block ends.
``synchronous=NORMAL`` in WAL
mode keeps a commit across a process crash (kill -9) and never corrupts the file; only an
OS crash or power loss can drop the last few commits (the price of sub-millisecond adds).

Resume: opening the file replays programs and migrations in insertion order into
:class:`~agentopt.evolve.selection.Population`, reading only the small hot columns, which
reproduces the in-memory state exactly (see ``selection`` for the determinism rules).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import random
import re
import sqlite3
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from pydantic import BaseModel

from agentopt.errors import AgentoptError
from agentopt.evolve.features import (
    REFERENCE_SAMPLE,
    CodeProfile,
    ReferenceSet,
    bins_for,
    code_profile,
    raw_features,
)
from agentopt.evolve.front import ObjectivePoint
from agentopt.evolve.hashing import code_distance
from agentopt.evolve.operator_stats import OperatorStats, operator_name, tuning_columns
from agentopt.evolve.selection import Direction, Population, Record, SelectionParams, rank_key
from agentopt.task import Objective, SearchSpec

# 2: programs.func_hash (functional-equivalence cache); 3: programs.output_tail (why a candidate
# failed: the guest's last output); 4: per-operator columns (operator, reused, tune_evals,
# tune_gain). Older files are upgraded in place on open.
SCHEMA_VERSION = 4
FORMAT_NAME = "agentopt-programdb"
APPLICATION_ID = 0x41474F50  # "AGOP" in the SQLite header, so `file`-style tools can tell
CODE_CACHE_SIZE = 512
PROGRAM_CACHE_SIZE = 64  # sampled parents/inspirations (ProgramDB._get_seq)
NEAR_DUPLICATE_TOP = 8  # best members of the island compared by is_near_duplicate
# Settings that decide the shape of the stored indexes; a reopened run must not change them.
STRUCTURAL_SEARCH_KEYS = ("num_islands", "feature_dimensions", "feature_bins")
_SECRET_KEY = re.compile(r"api[_-]?key|authorization|secret|password|bearer", re.IGNORECASE)

_SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE blobs(id INTEGER PRIMARY KEY, hash BLOB NOT NULL UNIQUE, code BLOB NOT NULL);
CREATE TABLE programs(
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    parent_id TEXT,
    iteration INTEGER NOT NULL,
    generation INTEGER NOT NULL,
    island INTEGER NOT NULL,
    score REAL,
    rankable INTEGER NOT NULL,
    code_hash TEXT NOT NULL,
    norm_hash TEXT NOT NULL,
    blob INTEGER NOT NULL REFERENCES blobs(id),
    features TEXT,
    data BLOB NOT NULL,
    func_hash TEXT,
    output_tail TEXT,
    operator TEXT,
    reused INTEGER,
    tune_evals INTEGER,
    tune_gain REAL
);
CREATE INDEX programs_code_hash ON programs(code_hash);
CREATE INDEX programs_norm_hash ON programs(norm_hash);
CREATE INDEX programs_func_hash ON programs(func_hash) WHERE func_hash IS NOT NULL;
CREATE TABLE migrations(
    ord INTEGER PRIMARY KEY, epoch INTEGER NOT NULL, after_seq INTEGER NOT NULL,
    program_seq INTEGER NOT NULL, to_island INTEGER NOT NULL
);
CREATE TABLE state(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE llm_calls(seq INTEGER PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE rejections(
    seq INTEGER PRIMARY KEY, iteration INTEGER NOT NULL, parent_id TEXT,
    reason TEXT NOT NULL, reply_excerpt TEXT NOT NULL
);
"""

# Several objectives: each program's objective values (created only for such runs).
_METRIC_VALUES = (
    "CREATE TABLE IF NOT EXISTS metric_values(seq INTEGER NOT NULL, metric TEXT NOT NULL, value REAL NOT NULL,"
    " PRIMARY KEY(seq, metric)) WITHOUT ROWID"
)

# Fields kept in the compressed ``data`` blob rather than in columns.
_DATA_FIELDS = (
    "score", "metrics", "feedback", "artifacts", "error", "error_kind", "stage", "complexity",
    "mutation", "isolation", "wall_s", "created_at", "stages",
)  # fmt: skip
_SELECT_PROGRAM = (
    "SELECT p.seq, p.id, p.parent_id, p.iteration, p.generation, p.island, p.code_hash,"
    " p.norm_hash, p.func_hash, p.output_tail, p.data, b.code FROM programs p JOIN blobs b ON b.id = p.blob"
)
# Schema upgrades applied on open, by the version they lead to. Only additive changes, so an
# upgraded file replays exactly as before (programs stored before have no functional hash).
_UPGRADES = {
    2: (
        "ALTER TABLE programs ADD COLUMN func_hash TEXT",
        "CREATE INDEX programs_func_hash ON programs(func_hash) WHERE func_hash IS NOT NULL",
    ),
    3: ("ALTER TABLE programs ADD COLUMN output_tail TEXT",),
    # Per-operator accounting (agentopt.evolve.operator_stats). Rows stored before have NULLs there;
    # operator_counts derives their operator from the mutation blob instead.
    4: tuple(
        f"ALTER TABLE programs ADD COLUMN {column}"
        for column in ("operator TEXT", "reused INTEGER", "tune_evals INTEGER", "tune_gain REAL")
    ),
}


class ProgramDBError(AgentoptError):
    """The database file cannot be used: not an agentopt DB, newer schema, or settings clash."""


class Program(BaseModel):
    """One evaluated candidate, exactly as stored and as handed to prompts and reports."""

    id: str
    code: str
    parent_id: str | None = None
    iteration: int = 0
    generation: int = 0
    island: int = 0
    score: float | None = None
    metrics: dict[str, float] = {}
    feedback: str = ""
    artifacts: dict[str, str] = {}
    error: str | None = None
    error_kind: str | None = None
    # Capped, terminal-safe tail of the guest's output (evaluator traceback, the candidate's own
    # prints) for a failed candidate; "" for successes and for runs stored before schema 3.
    output_tail: str = ""
    stage: int = 0
    code_hash: str = ""
    norm_hash: str = ""
    # Hash of the evaluator's fingerprint(program_path) outputs ("" when it has no such hook).
    func_hash: str = ""
    complexity: float = 0.0
    mutation: dict[str, Any] = {}
    isolation: list[str] = []
    wall_s: float = 0.0
    created_at: float = 0.0
    # Cascade stages this evaluation ran (see EvalResult.stages); empty for cache hits.
    stages: list[dict[str, Any]] = []

    @property
    def ok(self) -> bool:
        return self.error is None and self.score is not None


def make_program_id(seed: int, iteration: int, code_hash: str) -> str:
    """Deterministic 16-hex id: same run seed, iteration and code always give the same id,
    which is what makes re-adding a program after a resume a no-op."""
    return hashlib.sha256(f"{seed}:{iteration}:{code_hash}".encode()).hexdigest()[:16]


def _compress(data: bytes) -> bytes:
    """A zlib stream of ``data`` with a window and hash table sized to it.

    Why not ``zlib.compress``: it sets up deflate's full 32 KB window and 64 K-entry hash table
    (~256 KB allocated and cleared) for every call, which for a 1 KB program or row cost ~10x
    the compression itself (~130 us vs ~10 us, twice per stored program). A window at least as
    long as the input finds the same matches (same output size, within a byte); any zlib
    reader (``zlib.decompress``) reads it, so stored files stay compatible both ways."""
    bits = (len(data) + 262).bit_length()  # deflate's window must exceed the input + its lookahead
    packer = zlib.compressobj(6, zlib.DEFLATED, min(15, max(9, bits)), min(8, max(1, bits - 6)))
    return packer.compress(data) + packer.flush()


def _pack(fields: dict[str, Any]) -> bytes:
    """JSON of the cold fields; zlib-compressed only when that pays (small rows stay raw)."""
    raw = json.dumps(fields, separators=(",", ":"), default=str).encode("utf-8")
    return _compress(raw) if len(raw) > 200 else raw


def _unpack(data: bytes) -> dict[str, Any]:
    # Raw JSON starts with '{'; a zlib stream never does (its first byte is 0x18-0x78).
    return json.loads(data if data[:1] == b"{" else zlib.decompress(data))


def _rankable(program: Program) -> bool:
    # NaN cannot be ordered (and SQLite stores it as NULL), so it never enters the indexes.
    return program.ok and not math.isnan(program.score)  # type: ignore[arg-type]


def _redact(value: Any) -> Any:
    """Drop values stored under secret-looking keys (defence in depth for llm_calls)."""
    if isinstance(value, dict):
        return {k: "<redacted>" if _SECRET_KEY.search(str(k)) else _redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v) for v in value]
    return value


def selection_params(search: SearchSpec) -> SelectionParams:
    """The selection knobs of a run's search settings (the store and its read-only views)."""
    return SelectionParams(
        num_islands=search.num_islands,
        bins=bins_for(tuple(search.feature_dimensions), search.feature_bins),
        population_size=search.population_size,
        archive_size=search.archive_size,
        exploration_ratio=search.exploration_ratio,
        exploitation_ratio=search.exploitation_ratio,
        elite_selection_ratio=search.elite_selection_ratio,
        reference_sample=REFERENCE_SAMPLE,
        top_share=search.parent_top_share,
        top_k=search.parent_top_k,
    )


def _goal(objective: Objective) -> str:
    """What a run optimizes, for the reopen-mismatch error."""
    return objective.describe() if objective.is_multi else f"{objective.direction} '{objective.metric}'"


def objective_directions(objective: Objective) -> tuple[Direction, ...] | None:
    """The directions of a run's several objectives (what Population keeps a front for), or None."""
    return tuple(m.direction for m in objective.metrics) if objective.is_multi else None


def objective_vectors(conn: sqlite3.Connection, objective: Objective, after_seq: int = 0) -> dict[int, tuple[float, ...]]:
    """seq -> objective vector (in objective order) of every program past ``after_seq`` that
    reported all objectives; empty for a single-objective run (it has no metric_values)."""
    if not objective.is_multi:
        return {}
    names = [m.metric for m in objective.metrics]
    found: dict[int, dict[str, float]] = {}
    for seq, name, value in conn.execute(
        "SELECT seq, metric, value FROM metric_values WHERE seq > ? ORDER BY seq", (after_seq,)
    ):
        found.setdefault(seq, {})[name] = value
    return {seq: tuple(got[n] for n in names) for seq, got in found.items() if all(n in got for n in names)}


def read_objective_points(conn: sqlite3.Connection, objective: Objective) -> list[ObjectivePoint]:
    """Every valid program of a multi-objective run with all its objective values, in insertion
    order (one join over indexed tables; no blob is read). Empty for a single-objective run."""
    if not objective.is_multi:
        return []
    names = [m.metric for m in objective.metrics]
    rows: dict[int, tuple[str, int, float, dict[str, float]]] = {}
    for seq, pid, iteration, score, name, value in conn.execute(
        "SELECT p.seq, p.id, p.iteration, p.score, v.metric, v.value FROM programs p"
        " JOIN metric_values v ON v.seq = p.seq WHERE p.rankable = 1 ORDER BY p.seq"
    ):
        rows.setdefault(seq, (pid, iteration, score, {}))[3][name] = value
    return [
        ObjectivePoint(pid, iteration, seq, score, tuple(got[n] for n in names))
        for seq, (pid, iteration, score, got) in rows.items()
        if all(n in got for n in names)
    ]


def replay_into(
    pop: Population,
    moves: list[tuple[int, int, int, int]],
    rows: Iterable[tuple[int, str, int, int, float | None, int, str | None]],
    direction: Direction,
    values: dict[int, tuple[float, ...]] | None = None,
) -> tuple[int, int | None]:
    """Insert stored programs ``(seq, id, iteration, island, score, rankable, features)`` and
    apply migrations ``(epoch, after_seq, program_seq, to_island)`` into ``pop`` in their
    original order; returns (programs inserted, last seq). ``values``: each program's objective
    vector (runs with several objectives). Used on reopen, and by the read-only RunView to
    follow a live store incrementally (rows and moves past what it has seen)."""
    batches: list[tuple[int, list[tuple[int, int]]]] = []
    last: tuple[int, int] | None = None
    for epoch, after_seq, program_seq, to_island in moves:
        if last != (epoch, after_seq):
            batches.append((after_seq, []))
            last = (epoch, after_seq)
        batches[-1][1].append((program_seq, to_island))
    pending, count, last_seq = 0, 0, None
    for seq, pid, iteration, island, score, rankable, features in rows:
        while pending < len(batches) and batches[pending][0] < seq:
            pop.apply_migration(batches[pending][1])
            pending += 1
        key = rank_key(score, iteration, seq, direction) if rankable else None  # type: ignore[arg-type]
        feats = tuple(json.loads(features)) if features is not None else None
        vector = values.get(seq) if values is not None and rankable else None
        pop.insert(Record(seq, pid, iteration, island, key, feats, vector))
        count += 1
        last_seq = seq
    while pending < len(batches):
        pop.apply_migration(batches[pending][1])
        pending += 1
    return count, last_seq


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _locked(method: Callable[Concatenate[ProgramDB, _P], _R]) -> Callable[Concatenate[ProgramDB, _P], _R]:
    """Serialize a method on the instance lock: LLM-call hooks may fire from worker threads,
    and one thread's statement must never land inside another's open transaction."""

    @functools.wraps(method)
    def wrapper(self: ProgramDB, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self._lock:
            return method(self, *args, **kwargs)

    return wrapper


class ProgramDB:
    """SQLite-backed program store with MAP-Elites islands; see the module docstring."""

    def __init__(
        self, path: Path, conn: sqlite3.Connection, objective: Objective, search: SearchSpec
    ) -> None:
        self.path = path
        self.objective = objective
        self.search = search
        self._conn = conn
        self._dims = tuple(search.feature_dimensions)
        self._pop = Population(selection_params(search), objective.direction, objective_directions(objective))
        self._count = 0
        self._last_seq = 0
        self._migration_epoch = 0
        self._code_cache: OrderedDict[int, str] = OrderedDict()
        self._program_cache: OrderedDict[int, Program] = OrderedDict()
        self._references = [ReferenceSet() for _ in range(search.num_islands)]
        self._ref_profiles: dict[int, CodeProfile] = {}
        self._distance: Any = None
        self._lock = threading.RLock()
        self._best_cache: tuple[int, Program] | None = None
        self._batch_open = False  # inside batch(): writes join its transaction (as savepoints)

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: Path, *, objective: Objective, search: SearchSpec) -> ProgramDB:
        """Create the database or reopen it (rebuilding every index by replay)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA busy_timeout = 10000")
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            if not tables:
                cls._create(conn, objective, search)
            else:
                cls._check(path, conn, tables, objective, search)
                cls._upgrade(conn)
            if objective.is_multi:
                conn.execute(_METRIC_VALUES)
        except sqlite3.DatabaseError as err:
            conn.close()
            raise ProgramDBError(f"{path}: not an agentopt program database ({err})") from None
        except BaseException:
            conn.close()
            raise
        db = cls(path, conn, objective, search)
        db._replay()
        return db

    @staticmethod
    def _create(conn: sqlite3.Connection, objective: Objective, search: SearchSpec) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            meta = {
                "format": FORMAT_NAME,
                "schema_version": str(SCHEMA_VERSION),
                "objective": objective.stored(),
                "search": search.model_dump_json(),
                "created_at": repr(time.time()),
            }
            conn.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", sorted(meta.items()))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    @staticmethod
    def _check(
        path: Path, conn: sqlite3.Connection, tables: set[str], objective: Objective, search: SearchSpec
    ) -> None:
        if "meta" not in tables:
            raise ProgramDBError(
                f"{path}: not an agentopt program database (SQLite file without agentopt tables)"
            )
        meta = dict(conn.execute("SELECT key, value FROM meta"))
        if meta.get("format") != FORMAT_NAME:
            raise ProgramDBError(f"{path}: not an agentopt program database (format {meta.get('format')!r})")
        version = int(meta.get("schema_version", "0"))
        if version > SCHEMA_VERSION:
            raise ProgramDBError(
                f"{path}: written by a newer agentopt (schema version {version}, this one reads up to "
                f"{SCHEMA_VERSION}); upgrade agentopt"
            )
        stored_obj = Objective.model_validate_json(meta["objective"])
        if not stored_obj.same_objectives(objective):
            raise ProgramDBError(
                f"{path}: run was created to {_goal(stored_obj)} but the task now says "
                f"{_goal(objective)}; use a new output directory"
            )
        stored_search = json.loads(meta["search"])
        for key in STRUCTURAL_SEARCH_KEYS:
            now = search.model_dump(mode="json")[key]
            if stored_search.get(key) != now:
                raise ProgramDBError(
                    f"{path}: run was created with search.{key} = {stored_search.get(key)!r}, the task now says "
                    f"{now!r}; use a new output directory"
                )

    @staticmethod
    def _upgrade(conn: sqlite3.Connection) -> None:
        """Bring an older (checked, readable) file up to SCHEMA_VERSION in one transaction."""
        (raw,) = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        version = int(raw)
        if version >= SCHEMA_VERSION:
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _UPGRADES[target]:
                    conn.execute(statement)
            conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _replay(self) -> None:
        """Rebuild the in-memory indexes by re-inserting stored programs and migrations in
        their original order (reads only hot columns; never the code or data blobs)."""
        row = self._conn.execute("SELECT value FROM state WHERE key = '__migration_epoch'").fetchone()
        self._migration_epoch = int(json.loads(row[0])) if row else 0
        moves = self._conn.execute("SELECT epoch, after_seq, program_seq, to_island FROM migrations ORDER BY ord")
        rows = self._conn.execute(
            "SELECT seq, id, iteration, island, score, rankable, features FROM programs ORDER BY seq"
        )
        vectors = objective_vectors(self._conn, self.objective)
        self._count, last = replay_into(self._pop, moves.fetchall(), rows, self.objective.direction, vectors)
        self._last_seq = last or 0

    # ------------------------------------------------------------------ writing
    @_locked
    def add(
        self, program: Program, *, states: dict[str, Any] | None = None, drop_states: Sequence[str] = ()
    ) -> None:
        """Store ``program`` durably, then index it. A known id is ignored (idempotent resume).

        ``states`` / ``drop_states`` are written / deleted in the same transaction (the pipelined
        controller commits an iteration's program and its run-state advance together)."""
        if not 0 <= program.island < len(self._pop.islands):
            raise ValueError(
                f"program {program.id}: island {program.island} outside 0..{len(self._pop.islands) - 1}"
            )
        rankable = _rankable(program)
        profile = code_profile(program.code) if rankable and "diversity" in self._dims else None
        features = self._features(program, profile) if rankable else None
        code_bytes = program.code.encode("utf-8")
        digest = hashlib.sha256(code_bytes).digest()[:16]
        data = _pack({f: getattr(program, f) for f in _DATA_FIELDS})
        operator = operator_name(program.mutation, has_parent=program.parent_id is not None)
        names = [m.metric for m in self.objective.metrics]
        vector = tuple(program.metrics[n] for n in names) if rankable and names and all(
            n in program.metrics for n in names) else None  # fmt: skip
        tune_evals, tune_gain = tuning_columns(program.mutation, self.objective.direction == "maximize")
        with self._transaction() as conn:
            # Upsert returning the id: one statement whether or not the text is already stored.
            (blob_id,) = conn.execute(
                "INSERT INTO blobs(hash, code) VALUES (?, ?) ON CONFLICT(hash) DO UPDATE SET hash = excluded.hash"
                " RETURNING id",
                (digest, _compress(code_bytes)),
            ).fetchone()
            cur = conn.execute(
                "INSERT OR IGNORE INTO programs(id, parent_id, iteration, generation, island, score, rankable,"
                " code_hash, norm_hash, blob, features, data, func_hash, output_tail, operator, reused, tune_evals,"
                " tune_gain) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    program.id, program.parent_id, program.iteration, program.generation, program.island,
                    program.score if rankable else None, int(rankable), program.code_hash, program.norm_hash,
                    blob_id, json.dumps(features) if features is not None else None, data,
                    program.func_hash or None, program.output_tail or None, operator,
                    int("cache_hit" in program.mutation), tune_evals, tune_gain,
                ),
            )  # fmt: skip
            seq = int(cur.lastrowid or 0) if cur.rowcount else 0  # 0: id already stored (a resumed re-add)
            if seq and self.objective.is_multi:
                conn.executemany(
                    "INSERT INTO metric_values(seq, metric, value) VALUES (?, ?, ?)",
                    [(seq, name, program.metrics[name]) for name in names if name in program.metrics],
                )
            self._write_states(states, drop_states)
        if not seq:
            return
        self._count += 1
        self._last_seq = seq
        self._remember_code(seq, program.code)
        if profile is not None:
            self._keep_reference_profile(seq, profile, program.island)
        key = rank_key(program.score, program.iteration, seq, self.objective.direction) if rankable else None  # type: ignore[arg-type]
        self._pop.insert(Record(seq, program.id, program.iteration, program.island, key, features, vector))

    def _features(self, program: Program, profile: CodeProfile | None) -> tuple[float, ...]:
        refs: ReferenceSet | None = None
        if "diversity" in self._dims:
            refs = self._references[program.island]
            seqs = self._pop.islands[program.island].references
            for seq in seqs[len(refs) :]:  # catch up (after a reopen, or a new reference)
                refs.append(self._ref_profiles.pop(seq, None) or code_profile(self._code(seq)))
        return raw_features(
            self._dims,
            code=program.code,
            complexity=program.complexity,
            score=float(program.score),  # type: ignore[arg-type]
            metrics=program.metrics,
            profile=profile,
            references=refs,
        )

    def _keep_reference_profile(self, seq: int, profile: CodeProfile, island: int) -> None:
        # Population.insert (called right after) makes this program a reference of its
        # island while the sample has room; keep its profile so it is not recomputed.
        if len(self._pop.islands[island].references) < REFERENCE_SAMPLE:
            self._ref_profiles[seq] = profile

    @_locked
    def maybe_migrate(self, iteration: int) -> int:
        """Ring-migrate each island's top ``migration_rate`` fraction once per
        ``migration_interval`` iterations; returns how many programs moved.

        Rounds are numbered ``iteration // migration_interval``: a round runs the first time
        any iteration of it is seen (batches may skip the exact multiple) and never twice,
        also across a resume. The moves and the round number commit together.

        Lineage: a migrant is not copied. It keeps its single row and id (and its birth
        ``Program.island``) and becomes a member of the destination island as well; the
        ``migrations`` table records each move so a reopen replays it.
        """
        epoch = iteration // self.search.migration_interval
        if epoch <= self._migration_epoch or len(self._pop.islands) < 2:
            return 0
        moves = self._pop.plan_migration(self.search.migration_rate)
        after_seq = self._last_seq
        with self._transaction() as conn:
            conn.executemany(
                "INSERT INTO migrations(epoch, after_seq, program_seq, to_island) VALUES (?, ?, ?, ?)",
                [(epoch, after_seq, seq, dest) for seq, dest in moves],
            )
            conn.execute(
                "INSERT OR REPLACE INTO state(key, value) VALUES ('__migration_epoch', ?)",
                (json.dumps(epoch),),
            )
        self._migration_epoch = epoch
        self._pop.apply_migration(moves)
        return len(moves)

    def record_llm_call(self, record: dict[str, Any]) -> None:
        """Append one LLM call record (secret-looking keys are redacted before storing)."""
        self._write("INSERT INTO llm_calls(data) VALUES (?)", (json.dumps(_redact(record), default=str),))

    @_locked
    def llm_calls(self) -> list[dict[str, Any]]:
        return [json.loads(row[0]) for row in self._conn.execute("SELECT data FROM llm_calls ORDER BY seq")]

    @_locked
    def record_rejection(
        self,
        *,
        iteration: int,
        parent_id: str | None,
        reason: str,
        reply_excerpt: str,
        states: dict[str, Any] | None = None,
        drop_states: Sequence[str] = (),
    ) -> None:
        """Append an LLM reply that produced no child (bad diff, too long, near duplicate);
        ``states`` / ``drop_states`` land in the same transaction (see :meth:`add`)."""
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO rejections(iteration, parent_id, reason, reply_excerpt) VALUES (?, ?, ?, ?)",
                (iteration, parent_id, reason, reply_excerpt[:4000]),
            )
            self._write_states(states, drop_states)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Every write made inside lands in ONE transaction, committed when the block ends.

        Why: the pipelined controller commits iteration ``i`` and, in the same synchronous
        step, starts iteration ``i + window`` (its start record). Separately that is two
        commits, each rewriting the WAL pages it touched; together it is one. Each write inside
        keeps its own atomicity (a savepoint: a failed write leaves nothing behind) and the
        block commits whatever succeeded even when it raises, so what is durable afterwards is
        exactly what separate transactions would have left; only the moment moves to the end of
        the block (synchronous code, no awaits: a crash inside it loses at most the step, which
        a resume redoes from the previous commit). Holds the instance lock throughout, so no
        other thread's statement lands inside. Nested calls join the outer block."""
        with self._lock:
            if self._batch_open:
                yield
                return
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            self._batch_open = True
            try:
                yield
            finally:
                self._batch_open = False
                if conn.in_transaction:
                    conn.execute("COMMIT")

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any error (caller holds the lock). Inside
        :meth:`batch`: a savepoint of the batch's transaction, rolled back to on any error."""
        conn = self._conn
        if self._batch_open:
            conn.execute("SAVEPOINT write")
            try:
                yield conn
            except BaseException:
                with contextlib.suppress(sqlite3.Error):  # an error may have ended the transaction
                    conn.execute("ROLLBACK TO write")
                    conn.execute("RELEASE write")
                raise
            conn.execute("RELEASE write")
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _write_states(self, states: dict[str, Any] | None, drop: Sequence[str]) -> None:
        """Inside an open transaction: upsert ``states``, delete ``drop``."""
        if states:
            self._conn.executemany(
                "INSERT OR REPLACE INTO state(key, value) VALUES (?, ?)",
                [(key, json.dumps(value)) for key, value in states.items()],
            )
        if drop:
            self._conn.executemany("DELETE FROM state WHERE key = ?", [(key,) for key in drop])

    @_locked
    def rejections(self) -> list[dict[str, Any]]:
        rows = self._conn.execute(
            "SELECT iteration, parent_id, reason, reply_excerpt FROM rejections ORDER BY seq"
        )
        return [{"iteration": i, "parent_id": p, "reason": r, "reply_excerpt": e} for i, p, r, e in rows]

    def set_state(self, key: str, value: Any) -> None:
        """Store a JSON value (RNG state, counters, ledger snapshot) durably under ``key``."""
        self._write("INSERT OR REPLACE INTO state(key, value) VALUES (?, ?)", (key, json.dumps(value)))

    @_locked
    def set_states(self, values: dict[str, Any], *, drop: Sequence[str] = ()) -> None:
        """Store several JSON values (and delete the keys in ``drop``) in ONE transaction: the
        controller's bookkeeping (next iteration, counters, bandit statistics) lands together or
        not at all, so a crash can never leave a half-advanced run (and it is one commit, not ten)."""
        with self._transaction():
            self._write_states(values, drop)

    @_locked
    def get_state(self, key: str, default: Any = None) -> Any:
        row = self._conn.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    @_locked
    def states_with_prefix(self, prefix: str) -> dict[str, Any]:
        """Every state value whose key starts with ``prefix`` (the controller's per-iteration records)."""
        rows = self._conn.execute(
            "SELECT key, value FROM state WHERE substr(key, 1, ?) = ?", (len(prefix), prefix)
        )
        return {key: json.loads(value) for key, value in rows}

    @_locked
    def _write(self, sql: str, params: tuple[Any, ...]) -> None:
        # Autocommit mode: committed when this returns (inside batch(): when the batch ends; one
        # statement is atomic by itself, so it needs no savepoint).
        self._conn.execute(sql, params)

    # ------------------------------------------------------------------ reading
    @_locked
    def get(self, program_id: str) -> Program | None:
        row = self._conn.execute(_SELECT_PROGRAM + " WHERE p.id = ?", (program_id,)).fetchone()
        return None if row is None else self._program(row)

    @_locked
    def _get_seq(self, seq: int) -> Program:
        """The stored program ``seq``, from a small cache: sampling asks for the same parents
        and inspirations (an island's best few) iteration after iteration, and a stored row
        never changes, so re-reading, decompressing and rebuilding it each time was waste.
        Callers share the instance (as ``best()`` always did) and never mutate it."""
        cached = self._program_cache.get(seq)
        if cached is not None:
            self._program_cache.move_to_end(seq)
            return cached
        row = self._conn.execute(_SELECT_PROGRAM + " WHERE p.seq = ?", (seq,)).fetchone()
        program = self._program(row)
        self._program_cache[seq] = program
        if len(self._program_cache) > PROGRAM_CACHE_SIZE:
            self._program_cache.popitem(last=False)
        return program

    def _program(self, row: tuple[Any, ...]) -> Program:
        seq, pid, parent_id, iteration, generation, island, code_hash, norm_hash, func_hash, tail, data, code = row
        code_text = zlib.decompress(code).decode("utf-8")
        self._remember_code(seq, code_text)
        fields = _unpack(data)
        # Validated when it was added; model_construct skips re-validation (the hot path of
        # sample()) and fills defaults for any field a future version adds.
        return Program.model_construct(
            id=pid, code=code_text, parent_id=parent_id, iteration=iteration, generation=generation,
            island=island, code_hash=code_hash, norm_hash=norm_hash, func_hash=func_hash or "",
            output_tail=tail or "", **fields,
        )  # fmt: skip

    @_locked
    def _code(self, seq: int) -> str:
        code = self._code_cache.get(seq)
        if code is not None:
            self._code_cache.move_to_end(seq)
            return code
        row = self._conn.execute(
            "SELECT b.code FROM programs p JOIN blobs b ON b.id = p.blob WHERE p.seq = ?", (seq,)
        ).fetchone()
        code = zlib.decompress(row[0]).decode("utf-8")
        self._remember_code(seq, code)
        return code

    def _remember_code(self, seq: int, code: str) -> None:
        self._code_cache[seq] = code
        self._code_cache.move_to_end(seq)
        if len(self._code_cache) > CODE_CACHE_SIZE:
            self._code_cache.popitem(last=False)

    @_locked
    def best(self, island: int | None = None) -> Program | None:
        """Best ranked program overall, or on ``island`` (ties: earliest iteration)."""
        if island is None:
            key = self._pop.best
        else:
            ranked = self._pop.islands[island].ranked
            key = ranked[0] if ranked else None
        if key is None:
            return None
        cached = self._best_cache
        if cached is not None and cached[0] == key[2]:
            return cached[1]  # the controller asks after every child; stored rows never change
        program = self._get_seq(key[2])
        self._best_cache = (key[2], program)
        return program

    @_locked
    def objective_points(self) -> list[ObjectivePoint]:
        """Several objectives: every valid program's objective vector (see :func:`read_objective_points`)."""
        return read_objective_points(self._conn, self.objective)

    @_locked
    def front(self, island: int) -> list[Program]:
        """Several objectives: the non-dominated members of ``island`` now, best scalar first."""
        return [self._get_seq(key[2]) for key in self._pop.islands[island].front]

    def count(self, *, ok_only: bool = False) -> int:
        return self._pop.ok_count if ok_only else self._count

    @_locked
    def operator_counts(self) -> list[OperatorStats]:
        """Outcomes per operator over every stored child (see ``agentopt.evolve.operator_stats``),
        most children first. One aggregate query over plain columns: a window gives each
        program the best score stored before it, a self-join on the unique id its parent's."""
        better, best = (">", "MAX") if self.objective.direction == "maximize" else ("<", "MIN")
        flags = (
            "WITH ranked AS (SELECT seq, parent_id, operator, reused, rankable, score, tune_evals, tune_gain,"
            f" {best}(score) OVER (ORDER BY seq ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prior_best"
            " FROM programs),"
            " flags AS (SELECT c.seq, c.operator, c.rankable AS valid,"
            f" CASE WHEN c.rankable = 1 AND (p.rankable = 0 OR c.score {better} p.score) THEN 1 ELSE 0 END"
            " AS improved,"
            f" CASE WHEN c.rankable = 1 AND (c.prior_best IS NULL OR c.score {better} c.prior_best) THEN 1 ELSE 0 END"
            " AS new_best, COALESCE(c.reused, 0) AS reused, c.tune_evals, c.tune_gain"
            " FROM ranked c LEFT JOIN programs p ON p.id = c.parent_id WHERE c.parent_id IS NOT NULL)"
        )
        totals: dict[str, list[int]] = {}
        for name, *counts in self._conn.execute(
            f"{flags} SELECT operator, COUNT(*), SUM(valid), SUM(improved), SUM(new_best), SUM(reused),"
            " COUNT(tune_evals), TOTAL(tune_evals), SUM(CASE WHEN tune_gain > 0 THEN 1 ELSE 0 END)"
            " FROM flags WHERE operator IS NOT NULL GROUP BY operator"
        ):
            totals[name] = [int(v or 0) for v in counts]
        # Programs stored before schema 3 have NULL operator columns: read their mutation.
        maximize = self.objective.direction == "maximize"
        for data, valid, improved, new_best in self._conn.execute(
            f"{flags} SELECT (SELECT data FROM programs WHERE seq = flags.seq), valid, improved, new_best"
            " FROM flags WHERE operator IS NULL"
        ):
            try:
                mutation = _unpack(data).get("mutation") or {}
            except (ValueError, zlib.error):  # an unreadable record still counts, as "unknown"
                mutation = {}
            evaluations, gain = tuning_columns(mutation, maximize)
            row = totals.setdefault(operator_name(mutation), [0] * 8)
            counts = (
                1, valid, improved, new_best, int("cache_hit" in mutation), int(evaluations is not None),
                evaluations or 0, int(gain is not None and gain > 0),
            )  # fmt: skip
            for i, v in enumerate(counts):
                row[i] += int(v or 0)
        stats = [OperatorStats.from_counts(name, counts) for name, counts in totals.items()]
        return sorted(stats, key=lambda s: (-s.children, s.operator))

    def programs(self, *, order: str = "iteration") -> Iterator[Program]:
        """All stored programs: ``iteration`` (then insertion), ``insertion``, or ``score``
        (best first, then failed ones by iteration). Streams in pages; order from memory."""
        records = self._pop.records.values()
        if order == "insertion":
            seqs = sorted(self._pop.records)
        elif order == "iteration":
            seqs = [r.seq for r in sorted(records, key=lambda r: (r.iteration, r.seq))]
        elif order == "score":
            ranked = sorted(r.key for r in records if r.key is not None)
            failed = sorted((r.iteration, r.seq) for r in records if r.key is None)
            seqs = [k[2] for k in ranked] + [f[1] for f in failed]
        else:
            raise ValueError(f"unknown order {order!r} (iteration, insertion, score)")
        for start in range(0, len(seqs), 256):
            page = seqs[start : start + 256]
            marks = ",".join("?" * len(page))
            rows = {r[0]: r for r in self._conn.execute(_SELECT_PROGRAM + f" WHERE p.seq IN ({marks})", page)}
            for seq in page:
                yield self._program(rows[seq])

    @_locked
    def find_by_hash(
        self,
        *,
        code_hash: str | None = None,
        norm_hash: str | None = None,
        func_hash: str | None = None,
        max_iteration: int | None = None,
    ) -> Program | None:
        """Earliest stored program with this exact, normalized and/or functional hash (all given
        hashes must match), of an iteration <= ``max_iteration`` when given (so a pipelined
        lookup sees a fixed snapshot, not whatever was committed by then). Each hash is an
        indexed column, so a lookup costs O(log n)."""
        clauses: list[str] = []
        params: list[Any] = []
        if max_iteration is not None:
            clauses.append("p.iteration <= ?")
            params.append(max_iteration)
        if func_hash:
            clauses.append("p.func_hash = ?")
            params.append(func_hash)
        if code_hash:
            clauses.append("p.code_hash = ?")
            params.append(code_hash)
        if norm_hash:
            clauses.append("p.norm_hash = ?")
            params.append(norm_hash)
        if not (code_hash or norm_hash or func_hash):
            raise ValueError("find_by_hash needs code_hash, norm_hash or func_hash")
        sql = _SELECT_PROGRAM + " WHERE " + " AND ".join(clauses) + " ORDER BY p.seq LIMIT 1"
        row = self._conn.execute(sql, params).fetchone()
        return None if row is None else self._program(row)

    @_locked
    def grid(self, island: int) -> dict[tuple[int, ...], str]:
        """MAP-Elites cell -> elite program id on ``island`` (cells sorted)."""
        grid = self._pop.islands[island].grid
        return {cell: self._pop.records[grid[cell]].pid for cell in sorted(grid)}

    # ------------------------------------------------------------------ sampling
    def next_island(self, iteration: int) -> int:
        """Round-robin island for ``iteration``."""
        return iteration % len(self._pop.islands)

    @_locked
    def sample(
        self, rng: random.Random, *, island: int, num_top: int, num_diverse: int
    ) -> tuple[Program, list[Program]]:
        """Parent and inspirations for the next prompt on ``island``.

        Normal: parent by the exploration/exploitation/weighted mix, inspirations = top
        members plus elites of other cells. Fix mode: when the island has no ok program but
        has failed ones, the most recent failure is the parent (so the LLM repairs it) and
        inspirations come from the nearest island that has ok programs. An empty island is
        seeded from that nearest island. Consumes ``rng`` deterministically.
        """
        pop = self._pop
        if not 0 <= island < len(pop.islands):
            raise ValueError(f"island {island} outside 0..{len(pop.islands) - 1}")
        home = pop.islands[island]
        source = home if home.ranked else pop.donor(island)
        failed = home.last_failed if not home.ranked else None
        if failed is None and source is None:
            failed = pop.last_failed
        if failed is not None:
            parent_seq = failed
        elif source is not None:
            parent_seq = pop.choose_parent(rng, source)
        else:
            raise ProgramDBError(f"{self.path}: the program database is empty; add the initial program first")
        inspiration_seqs = (
            pop.inspirations(rng, source, parent_seq, num_top, num_diverse) if source is not None else []
        )
        return self._get_seq(parent_seq), [self._get_seq(seq) for seq in inspiration_seqs]

    @_locked
    def near_duplicate_candidates(self, island: int) -> list[int]:
        """The programs (by seq) :meth:`is_near_duplicate` compares against on ``island`` now:
        recent + best ok members. Bounded, so the cost is O(1) in store size. Failed programs
        are not candidates: a one-token repair of a failure is progress."""
        home = self._pop.islands[island]
        records = self._pop.records
        candidates: list[int] = []
        for seq in [*reversed(home.recent), *home.top(NEAR_DUPLICATE_TOP)]:
            if seq not in candidates and records[seq].key is not None:
                candidates.append(seq)
        return candidates

    @_locked
    def is_near_duplicate(
        self, code: str, *, island: int, threshold: float = 0.02, candidates: Sequence[int] | None = None
    ) -> bool:
        """True when ``code`` is within ``threshold`` distance of a recent or top ok program on
        ``island`` (or of ``candidates``, a list taken earlier by :meth:`near_duplicate_candidates`,
        so a pipelined check compares against the store as it was when the iteration started)."""
        if candidates is None:
            candidates = self.near_duplicate_candidates(island)
        if self._distance is None:
            self._distance = code_distance
        return any(self._distance(code, self._code(seq)) <= threshold for seq in candidates)

    # ------------------------------------------------------------------ closing
    @_locked
    def close(self) -> None:
        """Checkpoint the WAL into the main file and close (safe to call twice)."""
        conn, self._conn = self._conn, None  # type: ignore[assignment]
        if conn is None:
            return
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass  # another reader holds the WAL; the next open checkpoints it
        conn.close()

    def __enter__(self) -> ProgramDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
