"""Selection state without storage: bins, MAP-Elites invariants, cap, archive, strategies."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace

import pytest

from agentopt.evolve.features import (
    BinMapper,
    ReferenceSet,
    bins_for,
    code_profile,
    fast_code_distance,
    profile_distance,
    raw_features,
)
from agentopt.evolve.selection import Population, Record, SelectionParams, rank_key


def population(direction: str = "maximize", **kw: object) -> Population:
    params = SelectionParams(**{"num_islands": 1, "bins": (4, 4), **kw})  # type: ignore[arg-type]
    return Population(params, direction)  # type: ignore[arg-type]


def add(
    pop: Population, seq: int, score: float | None, features: tuple[float, ...] = (0.0, 0.0), island: int = 0
) -> None:
    key = rank_key(score, seq, seq, pop.direction) if score is not None else None
    pop.insert(Record(seq, f"p{seq}", seq, island, key, features if score is not None else None))


def random_population(seed: int, n: int, **kw: object) -> Population:
    rng = random.Random(seed)
    pop = population(**kw)
    for seq in range(1, n + 1):
        add(
            pop,
            seq,
            round(rng.uniform(0, 100), 2),
            (rng.uniform(0, 50), rng.uniform(0, 1)),
            island=seq % pop.params.num_islands,
        )
    return pop


# ---------------------------------------------------------------- features
def test_profile_distance_bounds() -> None:
    code = "def f(x):\n    return x + 1\n"
    assert profile_distance(code_profile(code), code_profile(code)) == 0.0
    assert fast_code_distance(code, code.replace("    ", "        ")) == 0.0  # whitespace-insensitive
    assert fast_code_distance("alpha beta gamma", "delta epsilon zeta") > 0.6
    assert 0.0 < fast_code_distance(code, code.replace("+ 1", "- 2")) < 0.3
    assert fast_code_distance("", "") == 0.0


def test_reference_set_mean_matches_pairwise() -> None:
    codes = ["a = 1", "b = a + 2 * c", "def g(): return [i for i in range(9)]"]
    refs = ReferenceSet()
    for c in codes:
        refs.append(code_profile(c))
    own = code_profile("b = a + 3")
    expected = sum(profile_distance(own, code_profile(c)) for c in codes) / 3
    assert refs.mean_distance(own) == pytest.approx(expected, abs=1e-12)
    assert ReferenceSet().mean_distance(own) == 0.0


def _dense_mean_distance(own_code: str, ref_codes: list[str]) -> float:
    """The former numpy computation (dense float64 bucket vectors): stored diversity values must
    not change, so the sparse integer profiles have to give the same floats, bit for bit."""
    np = pytest.importorskip("numpy")
    import math
    import zlib

    from agentopt.evolve.features import _TOKEN, PROFILE_BUCKETS

    def dense(code: str) -> tuple[object, float]:
        counts = Counter(_TOKEN.findall(code))
        vec = np.zeros(PROFILE_BUCKETS)
        for token, n in counts.items():
            vec[zlib.crc32(token.encode("utf-8")) % PROFILE_BUCKETS] += n
        return vec, float(sum(counts.values()))

    own, own_total = dense(own_code)
    refs = [dense(c) for c in ref_codes]
    matrix, totals = np.vstack([v for v, _ in refs]), np.array([t for _, t in refs]) + own_total
    common = np.minimum(matrix, own).sum(axis=1)
    safe = np.where(totals > 0, totals, 1.0)
    return math.fsum(np.where(totals > 0, 1.0 - 2.0 * common / safe, 0.0).tolist()) / len(refs)


def test_reference_set_bit_identical_to_dense_vectors() -> None:
    rng = random.Random(7)
    words = ["x", "y", "def", "return", "(", ")", ":", "+", "1", "2.5", "for", "in", "range", "é", "_tmp"]
    codes = ["", " ".join(rng.choices(words, k=3))] + [
        " ".join(rng.choices(words, k=rng.randint(1, 400))) for _ in range(40)
    ]
    for i in range(0, len(codes), 6):
        group = codes[i : i + 6]
        refs = ReferenceSet()
        for c in group[1:]:
            refs.append(code_profile(c))
        if len(refs):
            assert refs.mean_distance(code_profile(group[0])) == _dense_mean_distance(group[0], group[1:])


def test_raw_features_dimensions() -> None:
    values = raw_features(
        ["complexity", "score", "runtime", "missing"],
        code="abc",
        complexity=0.0,
        score=2.5,
        metrics={"runtime": 0.75},
        profile=None,
        references=None,
    )
    assert values == (3.0, 2.5, 0.75, 0.0)  # complexity 0 falls back to the code length
    assert bins_for(["a", "b"], {"a": 3}) == (3, 10)
    assert bins_for(["a", "b"], 5) == (5, 5)


def test_bin_mapper_grows_geometrically_and_clamps() -> None:
    mapper = BinMapper((10,))
    assert mapper.observe([1.0])
    assert mapper.cell([1.0]) == (0,)  # one value: no span yet
    assert mapper.observe([2.0]) and not mapper.observe([1.5])
    assert mapper.cell([1.0]) == (0,) and mapper.cell([2.0]) == (8,)  # 2.0 sits below the widened top
    changes = sum(mapper.observe([float(v)]) for v in range(3, 10_001))
    assert changes < 40  # monotone growth: logarithmically many range changes, not one per value
    assert mapper.cell([-5.0]) == (0,) and mapper.cell([1e9]) == (9,)


# ---------------------------------------------------------------- MAP-Elites invariants
def test_each_cell_holds_its_best_member() -> None:
    pop = random_population(1, 400, num_islands=2)
    for island in pop.islands:
        by_cell: dict[tuple[int, ...], list[tuple[float, int, int]]] = {}
        for key in island.ranked:
            by_cell.setdefault(island.mapper.cell(pop.records[key[2]].features), []).append(key)  # type: ignore[arg-type]
        assert {cell: min(keys)[2] for cell, keys in by_cell.items()} == island.grid
        assert {seq: cell for cell, seq in island.grid.items()} == island.cell_of


def test_population_cap_evicts_worst_non_elites() -> None:
    pop = random_population(2, 500, population_size=60, bins=(3, 3))
    assert pop.size == 60
    island = pop.islands[0]
    elites = set(island.cell_of)
    non_elite_worst = max(k for k in island.ranked if k[2] not in elites)
    evicted = [r.key for r in pop.records.values() if r.key is not None and r.seq not in island.members]
    assert all(k > non_elite_worst for k in evicted if k[2] not in elites)  # only worse ones were dropped
    assert pop.best is not None and pop.best[2] in island.members


def test_cap_may_be_exceeded_only_by_elites() -> None:
    pop = random_population(3, 200, population_size=2, bins=(5, 5))
    island = pop.islands[0]
    assert set(island.members) == set(island.cell_of)  # everything left is a cell elite


def test_archive_is_best_elites_and_capped() -> None:
    pop = random_population(4, 300, num_islands=3, archive_size=5, bins=(4, 4))
    all_elites = sorted({pop.records[s].key for isl in pop.islands for s in isl.cell_of})  # type: ignore[type-var]
    assert pop.archive() == [k[2] for k in all_elites[:5]]


def test_minimize_orders_lower_scores_first() -> None:
    pop = population("minimize")
    for seq, score in enumerate([3.0, -1.0, 7.0, -1.0], start=1):
        add(pop, seq, score)
    assert [k[2] for k in pop.islands[0].ranked] == [2, 4, 1, 3]
    assert pop.best is not None and pop.best[2] == 2


def test_failed_programs_stay_out_of_the_grid() -> None:
    pop = population()
    add(pop, 1, None)
    add(pop, 2, 1.0)
    add(pop, 3, None)
    island = pop.islands[0]
    assert island.last_failed == 3 and pop.last_failed == 3
    assert [k[2] for k in island.ranked] == [2] and pop.ok_count == 1


# ---------------------------------------------------------------- sampling strategies
def test_strategy_mix_follows_ratios() -> None:
    pop = random_population(5, 200, archive_size=3, bins=(4, 4))
    island = pop.islands[0]
    archive = set(pop.archive())
    rng = random.Random(0)
    pop.params = replace(pop.params, exploration_ratio=0.0, exploitation_ratio=1.0)
    assert {pop.choose_parent(rng, island) for _ in range(200)} == archive
    pop.params = replace(pop.params, exploration_ratio=1.0, exploitation_ratio=0.0)
    picks = Counter(pop.choose_parent(rng, island) for _ in range(4000))
    assert len(picks) > 150  # uniform over the island touches nearly everyone


def test_weighted_selection_prefers_better_scores() -> None:
    pop = population(exploration_ratio=0.0, exploitation_ratio=0.0)
    for seq in range(1, 101):
        add(pop, seq, float(seq))  # seq 100 is best
    rng = random.Random(1)
    picks = Counter(pop.choose_parent(rng, pop.islands[0]) for _ in range(20_000))
    top = sum(picks[s] for s in range(91, 101))
    bottom = sum(picks[s] for s in range(1, 11))
    assert top > 4 * bottom > 0  # proportional to (floor + normalized score): ~1.05 vs ~0.15


def test_exploitation_stays_on_island_without_archive_members() -> None:
    pop = population(num_islands=2, archive_size=1, exploration_ratio=0.0, exploitation_ratio=1.0)
    add(pop, 1, 100.0, island=0)  # the only archive slot goes to island 0's champion
    for seq in range(2, 30):
        add(pop, seq, float(seq), (float(seq), 0.0), island=1)
    rng = random.Random(0)
    picks = {pop.choose_parent(rng, pop.islands[1]) for _ in range(100)}
    assert picks and all(pop.records[s].island == 1 for s in picks)


def test_inspirations_exclude_parent_and_cover_other_cells() -> None:
    pop = random_population(6, 300, bins=(5, 5))
    island = pop.islands[0]
    parent = island.ranked[0][2]
    rng = random.Random(3)
    for _ in range(50):
        chosen = pop.inspirations(rng, island, parent, num_top=3, num_diverse=4)
        assert parent not in chosen and len(chosen) == len(set(chosen)) == 7
        assert chosen[:3] == [k[2] for k in island.ranked[1:4]]
        cells = [pop.cell_of(s, island) for s in [parent, *chosen[:3]]]
        diverse = chosen[3:]
        assert all(s in island.cell_of and island.cell_of[s] not in cells for s in diverse)
        assert len({island.cell_of[s] for s in diverse}) == 4


def test_migration_plan_is_a_snapshot_ring() -> None:
    pop = random_population(7, 90, num_islands=3, bins=(3, 3))
    tops = [isl.top(3) for isl in pop.islands]  # 30 members each, rate 0.1 -> 3
    moves = pop.plan_migration(0.1)
    assert moves == [(s, 1) for s in tops[0]] + [(s, 2) for s in tops[1]] + [(s, 0) for s in tops[2]]
    pop.apply_migration(moves)
    assert all(s in pop.islands[1].members for s in tops[0])
    assert pop.plan_migration(0.0) == []


def test_zero_feature_dimensions_is_one_cell_per_island() -> None:
    pop = population(bins=())
    for seq in range(1, 50):
        add(pop, seq, float(seq % 7), ())
    island = pop.islands[0]
    assert list(island.grid) == [()] and island.grid[()] == pop.best[2]  # type: ignore[index]
    assert sum(island.mapper.observe(()) for _ in range(3)) == 0  # no rebuild per insert
