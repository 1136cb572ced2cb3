"""In-memory selection state: islands, a MAP-Elites grid per island, the elite archive,
the population cap, migration planning, and the parent/inspiration sampling strategies.

This module knows nothing about SQLite. :class:`Population` is a deterministic function
of the sequence of :meth:`Population.insert` / :meth:`Population.apply_migration` calls,
which is how the database rebuilds it on reopen: it replays the stored programs and
migrations in their original order and gets the identical state, so a resumed run
samples exactly as the uninterrupted one would.

Everything is kept in ordered structures (sorted lists, sorted cell keys) and never in
set/dict iteration order or ``hash()``, so results do not depend on ``PYTHONHASHSEED``.
All per-call work is bounded by the island's grid size, the archive size or a bisect on
a sorted list; nothing scans the whole population, so add and sample stay flat as the
store grows.

Ranking: a program's *key* is ``(k, iteration, seq)`` where ``k`` is ``-score`` when
maximizing and ``score`` when minimizing; a lower key is better, so ties go to the
earliest iteration, then to insertion order.

Several objectives (``Population(..., objectives=directions)``): a record also carries its
objective vector, and each island keeps its non-dominated *front* up to date as members join
(incrementally: a newcomer enters unless a front member dominates it, and evicts the members
it dominates). Front members are never evicted by the population cap, so the front is exactly
the non-dominated set of everything that ever joined the island, and replay rebuilds it. The
``top_share`` of parents is then drawn from the front, weighted by NSGA-II crowding distance
(isolated points more often), the top inspirations likewise, and migrants are front members
(least crowded first); the rest of the mix (and every rank by the scalar score) is as for one
objective.

Migration keeps lineage by *membership*, not copies: a migrated program stays one row
with one id; it simply becomes a member of the destination island too (its
``Program.island`` remains the island it was born on).
"""

from __future__ import annotations

import math
import random
from bisect import bisect_left, insort
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import numpy as np

from agentopt.evolve.features import BinMapper, Cell
from agentopt.evolve.pareto import FrontIndex, crowding_array, crowding_weights, orient

Key = tuple[float, int, int]  # (k, iteration, seq): lower is better
Direction = Literal["maximize", "minimize"]

RECENT_PER_ISLAND = 16  # recent programs per island kept for near-duplicate checks
WEIGHT_FLOOR = 0.1  # weighted selection: the worst program keeps this weight (best: 1 + floor)
MAX_REJECTION_TRIES = 256


def rank_key(score: float, iteration: int, seq: int, direction: Direction) -> Key:
    """Sort key of a ranked program: lower is better, ties to earlier iteration then insertion."""
    return (-score if direction == "maximize" else score, iteration, seq)


@dataclass(slots=True)
class Record:
    """What selection needs to know about one stored program (code and text stay on disk)."""

    seq: int
    pid: str
    iteration: int
    island: int  # the island it was born on
    key: Key | None  # None: not rankable (failed, or no usable score)
    features: tuple[float, ...] | None
    values: tuple[float, ...] | None = None  # objective vector (several objectives); None: on no front


@dataclass(slots=True)
class Island:
    """One island: its ranked members, MAP-Elites grid and bookkeeping for sampling."""

    index: int
    mapper: BinMapper
    ranked: list[Key] = field(default_factory=list)  # members, best first
    members: set[int] = field(default_factory=set)  # membership test only, never iterated
    grid: dict[Cell, int] = field(default_factory=dict)  # cell -> elite seq
    cell_of: dict[int, Cell] = field(default_factory=dict)  # elite seq -> its cell
    references: list[int] = field(default_factory=list)  # seqs of the diversity reference sample
    recent: deque[int] = field(default_factory=lambda: deque(maxlen=RECENT_PER_ISLAND))
    last_failed: int | None = None
    front: list[Key] = field(default_factory=list)  # several objectives: the non-dominated members, by key
    front_members: set[int] = field(default_factory=set)  # membership test only, never iterated
    front_index: FrontIndex | None = None  # the incremental dominance structure behind `front`
    front_points: np.ndarray | None = None  # oriented objective vectors, one row per `front` entry
    # (front seqs, cumulative crowding weights) for draws; None after the front changed.
    front_weights: tuple[list[int], np.ndarray] | None = None

    def top(self, n: int) -> list[int]:
        """Seqs of the ``n`` best members, best first."""
        return [key[2] for key in self.ranked[:n]]


@dataclass(frozen=True, slots=True)
class SelectionParams:
    """The knobs of :class:`Population`, taken from ``SearchSpec`` (kept separate so this
    module can be tested without a task)."""

    num_islands: int = 1
    bins: tuple[int, ...] = (10, 10)
    population_size: int = 1000
    archive_size: int = 100
    exploration_ratio: float = 0.2
    exploitation_ratio: float = 0.7
    elite_selection_ratio: float = 0.1
    reference_sample: int = 8
    top_share: float = 0.0
    top_k: int = 3


class Population:
    """All islands plus the global elite archive; see the module docstring for invariants."""

    def __init__(
        self, params: SelectionParams, direction: Direction, objectives: tuple[Direction, ...] | None = None
    ) -> None:
        self.params = params
        self.direction: Direction = direction
        # Several objectives: their directions (the front is kept); None for a single score.
        self.objectives = objectives if objectives and len(objectives) > 1 else None
        self.records: dict[int, Record] = {}
        self.islands = [Island(i, BinMapper(params.bins)) for i in range(params.num_islands)]
        self.size = 0  # island memberships of ranked programs (the capped population)
        self.ok_count = 0
        self.best: Key | None = None
        self.last_failed: int | None = None
        # Elite archive: every program that is a cell elite on some island, best first.
        self._elite_refs: dict[int, int] = {}
        self._elites: list[Key] = []

    # ------------------------------------------------------------------ updates
    def insert(self, rec: Record) -> None:
        """Account for a newly stored program (also used when replaying on reopen)."""
        self.records[rec.seq] = rec
        island = self.islands[rec.island]
        island.recent.append(rec.seq)
        if rec.key is None:
            island.last_failed = rec.seq
            self.last_failed = rec.seq
            return
        self.ok_count += 1
        if self.best is None or rec.key < self.best:
            self.best = rec.key
        if len(island.references) < self.params.reference_sample:
            island.references.append(rec.seq)
        self._join(rec, island)
        self._enforce_cap()

    def plan_migration(self, rate: float) -> list[tuple[int, int]]:
        """Ring migration plan ``[(seq, destination island)]`` from a snapshot of all islands.

        Each island sends its top ``max(1, int(n * rate))`` members (see :meth:`_migrants`) to
        the next island (skipping ones already there). Computed before anything moves, so a program
        migrates at most one hop per round.
        """
        n = len(self.islands)
        if n < 2 or rate <= 0:
            return []
        moves: list[tuple[int, int]] = []
        for island in self.islands:
            if not island.ranked:
                continue
            dest = self.islands[(island.index + 1) % n]
            for seq in self._migrants(island, max(1, int(len(island.ranked) * rate))):
                if seq not in dest.members:
                    moves.append((seq, dest.index))
        return moves

    def _migrants(self, island: Island, k: int) -> list[int]:
        """The ``k`` members an island sends: its best by score; with several objectives, its
        front members, the least crowded first (ties in front order), so the trade-offs travel
        rather than one end of the front."""
        if self.objectives is None or not island.front:
            return island.top(k)
        crowding = self.front_crowding(island)
        order = sorted(range(len(crowding)), key=lambda i: (-crowding[i][1], i))
        return [crowding[i][0] for i in order[:k]]

    def apply_migration(self, moves: list[tuple[int, int]]) -> None:
        """Make each moved program a member of its destination island, then re-apply the cap."""
        for seq, dest in moves:
            island = self.islands[dest]
            if seq not in island.members:
                self._join(self.records[seq], island)
        self._enforce_cap()

    def _join(self, rec: Record, island: Island) -> None:
        assert rec.key is not None and rec.features is not None
        insort(island.ranked, rec.key)
        island.members.add(rec.seq)
        self.size += 1
        if self.objectives is not None:
            self._front_join(rec, island)
        if island.mapper.observe(rec.features):
            self._rebuild_grid(island)
            return
        cell = island.mapper.cell(rec.features)
        current = island.grid.get(cell)
        if current is None or rec.key < self._key(current):
            if current is not None:
                del island.cell_of[current]
                self._elite_release(current)
            island.grid[cell] = rec.seq
            island.cell_of[rec.seq] = cell
            self._elite_hold(rec.seq)

    def _front_join(self, rec: Record, island: Island) -> None:
        """Keep ``island.front`` the non-dominated set of its members (see the module docstring)."""
        import numpy as np  # deferred: numpy costs ~0.15 s to import; only runs with several objectives use it

        assert self.objectives is not None and rec.key is not None
        point = orient(rec.values, self.objectives)
        if point is None:
            return
        if island.front_index is None:
            island.front_index = FrontIndex(len(self.objectives))
        evicted = island.front_index.add(rec.seq, point)
        if evicted is None:
            return
        rows = island.front_points if island.front_points is not None else np.empty((0, len(point)))
        for seq in evicted:
            at = bisect_left(island.front, self._key(seq))
            del island.front[at]
            rows = np.delete(rows, at, axis=0)
            island.front_members.discard(seq)
        at = bisect_left(island.front, rec.key)
        island.front.insert(at, rec.key)
        island.front_points = np.insert(rows, at, point, axis=0)
        island.front_members.add(rec.seq)
        island.front_weights = None

    def _rebuild_grid(self, island: Island) -> None:
        """Re-bin every member after a range change; best-first order makes each cell's
        first arrival its elite."""
        for seq in sorted(island.cell_of):
            self._elite_release(seq)
        island.grid.clear()
        island.cell_of.clear()
        for key in island.ranked:
            seq = key[2]
            cell = island.mapper.cell(self._features(seq))
            if cell not in island.grid:
                island.grid[cell] = seq
                island.cell_of[seq] = cell
                self._elite_hold(seq)

    def _enforce_cap(self) -> None:
        """Evict the worst non-elite membership while over ``population_size``.

        Elites (which include every island's best and so the overall best) are never
        evicted; if only elites remain the population may exceed the cap.
        """
        best_seq = self.best[2] if self.best is not None else -1
        while self.size > self.params.population_size:
            victim: tuple[Key, int] | None = None
            for island in self.islands:
                for key in reversed(island.ranked):
                    seq = key[2]
                    if seq in island.cell_of or seq == best_seq or seq in island.front_members:
                        continue
                    if victim is None or (key, island.index) > victim:
                        victim = (key, island.index)
                    break
            if victim is None:
                return
            key, index = victim
            island = self.islands[index]
            del island.ranked[bisect_left(island.ranked, key)]
            island.members.discard(key[2])
            self.size -= 1

    def _elite_hold(self, seq: int) -> None:
        count = self._elite_refs.get(seq, 0)
        self._elite_refs[seq] = count + 1
        if count == 0:
            insort(self._elites, self._key(seq))

    def _elite_release(self, seq: int) -> None:
        count = self._elite_refs[seq] - 1
        if count:
            self._elite_refs[seq] = count
            return
        del self._elite_refs[seq]
        key = self._key(seq)
        del self._elites[bisect_left(self._elites, key)]

    def _key(self, seq: int) -> Key:
        key = self.records[seq].key
        assert key is not None
        return key

    def _features(self, seq: int) -> tuple[float, ...]:
        features = self.records[seq].features
        assert features is not None
        return features

    # ------------------------------------------------------------------ queries
    def archive(self) -> list[int]:
        """The elite archive: the best ``archive_size`` cell elites over all islands."""
        return [key[2] for key in self._elites[: self.params.archive_size]]

    def cell_of(self, seq: int, island: Island) -> Cell | None:
        """The cell ``seq`` falls into on ``island`` under its current ranges."""
        rec = self.records.get(seq)
        if rec is None or rec.features is None or not island.mapper.ready:
            return None
        return island.mapper.cell(rec.features)

    def donor(self, island: int) -> Island | None:
        """The first island after ``island`` (ring order) that has ranked members."""
        n = len(self.islands)
        for step in range(1, n + 1):
            candidate = self.islands[(island + step) % n]
            if candidate.ranked:
                return candidate
        return None

    # ------------------------------------------------------------------ sampling
    def choose_parent(self, rng: random.Random, island: Island) -> int:
        """Pick a parent seq from a non-empty island by the configured strategy mix."""
        p = self.params
        if p.top_share > 0 and rng.random() < p.top_share:
            if self.objectives is not None and island.front:
                return self._front_draw(rng, island, 1)[0]
            return self._top(rng, island)
        r = rng.random()
        if r < p.exploration_ratio:
            return self._explore(rng, island)
        if r < p.exploration_ratio + p.exploitation_ratio:
            return self._exploit(rng, island)
        return self._weighted(rng, island)

    def _top(self, rng: random.Random, island: Island) -> int:
        """One of the island's ``top_k`` best members, uniformly: AlphaEvolve/FunSearch-style
        exploitation, so most children descend from the current best few. Never from the worse
        half of a small island (with 3 members, "the best 3" would include the worst)."""
        candidates = island.top(min(self.params.top_k, max(1, len(island.ranked) // 2)))
        return candidates[rng.randrange(len(candidates))]

    def front_crowding(self, island: Island) -> list[tuple[int, float]]:
        """``(seq, crowding distance)`` of the island's front members, in front (key) order."""
        import numpy as np  # deferred: numpy costs ~0.15 s to import; only runs with several objectives use it

        distances = crowding_array(island.front_points) if island.front_points is not None else np.empty(0)
        return list(zip((key[2] for key in island.front), distances.tolist(), strict=True))

    def _front_draw(self, rng: random.Random, island: Island, n: int, exclude: set[int] | None = None) -> list[int]:
        """Up to ``n`` distinct front members (not in ``exclude``), each drawn with probability
        proportional to its crowding weight (:func:`~agentopt.evolve.pareto.crowding_weights`):
        a bisect into cumulative weights, recomputed (vectorized) only when the front changed;
        a repeat is drawn again (bounded), like ``_weighted``."""
        import numpy as np  # deferred: numpy costs ~0.15 s to import; only runs with several objectives use it

        assert self.objectives is not None and island.front_points is not None
        if island.front_weights is None:
            weights = crowding_weights(crowding_array(island.front_points), len(self.objectives))
            island.front_weights = ([key[2] for key in island.front], np.cumsum(weights))
        seqs, cumulative = island.front_weights
        taken = set(exclude or ())
        if len(seqs) - len(taken & island.front_members) <= n:
            return [seq for seq in seqs if seq not in taken]
        chosen: list[int] = []
        while len(chosen) < n:
            for _ in range(MAX_REJECTION_TRIES):
                at = int(np.searchsorted(cumulative, rng.random() * float(cumulative[-1]), side="right"))
                seq = seqs[min(at, len(seqs) - 1)]
                if seq not in taken:
                    break
            else:  # pathological weights: take the first one left, in front order
                seq = next(s for s in seqs if s not in taken)
            chosen.append(seq)
            taken.add(seq)
        return chosen

    def _explore(self, rng: random.Random, island: Island) -> int:
        return island.ranked[rng.randrange(len(island.ranked))][2]

    def _exploit(self, rng: random.Random, island: Island) -> int:
        """A member of the elite archive living on this island; else one of the island's
        top ``elite_selection_ratio`` (islands stay isolated between migrations)."""
        candidates = [seq for seq in self.archive() if seq in island.members]
        if not candidates:
            n = max(1, math.ceil(self.params.elite_selection_ratio * len(island.ranked)))
            candidates = island.top(n)
        return candidates[rng.randrange(len(candidates))]

    def _weighted(self, rng: random.Random, island: Island) -> int:
        """Score-proportional pick via rejection sampling: O(1) expected, no per-call sums.

        Weight = WEIGHT_FLOOR + normalized score in [0, 1] (so minimize works and the worst
        member keeps a chance); acceptance is at least floor / (1 + floor) per try.
        """
        ranked = island.ranked
        best_k, worst_k = ranked[0][0], ranked[-1][0]
        span = worst_k - best_k
        if not (span > 0 and math.isfinite(span)):
            return self._explore(rng, island)
        top = 1.0 + WEIGHT_FLOOR
        key = ranked[0]
        for _ in range(MAX_REJECTION_TRIES):
            key = ranked[rng.randrange(len(ranked))]
            weight = WEIGHT_FLOOR + (worst_k - key[0]) / span
            if rng.random() * top < weight:
                break
        return key[2]

    def inspirations(
        self, rng: random.Random, island: Island, parent: int, num_top: int, num_diverse: int
    ) -> list[int]:
        """Top members of the island, then elites of other MAP-Elites cells (random, distinct),
        never the parent and never twice."""
        chosen: list[int] = []
        taken = {parent}
        if self.objectives is not None and num_top > 0:  # the front first, by crowding weight
            chosen = self._front_draw(rng, island, num_top, exclude=taken)
            taken.update(chosen)
        for key in island.ranked:
            if len(chosen) >= num_top:
                break
            if key[2] not in taken:
                chosen.append(key[2])
                taken.add(key[2])
        if num_diverse <= 0 or not island.grid:
            return chosen
        used: set[Cell] = set()
        for seq in chosen + [parent]:
            cell = self.cell_of(seq, island)
            if cell is not None:
                used.add(cell)
        cells = sorted(c for c, seq in island.grid.items() if c not in used and seq not in taken)
        for cell in rng.sample(cells, min(num_diverse, len(cells))):
            chosen.append(island.grid[cell])
        return chosen
