"""ProgramDB: storage round trip, durability, resume/determinism, islands, fix mode, caps."""

from __future__ import annotations

import json
import math
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from agentopt.errors import AgentoptError
from agentopt.evolve.db import Program, ProgramDB, ProgramDBError, make_program_id
from agentopt.task import Objective, SearchSpec

REPO = Path(__file__).resolve().parents[1]


def make(i: int, score: float | None, *, island: int = 0, code: str | None = None, **kw: object) -> Program:
    code = code if code is not None else f"def f(x):\n    return x * {i} + {i % 7}\n" + "# c\n" * (i % 13)
    return Program(
        id=make_program_id(0, i, f"h{i}"),
        code=code,
        iteration=i,
        island=island,
        score=score,
        error=None if score is not None else "boom",
        complexity=float(len(code)),
        **kw,  # type: ignore[arg-type]
    )


def open_db(path: Path, objective: Objective | None = None, **search: object) -> ProgramDB:
    return ProgramDB.open(path, objective=objective or Objective(), search=SearchSpec(**search))  # type: ignore[arg-type]


def fill(db: ProgramDB, n: int, seed: int = 0, fail_rate: float = 0.15) -> None:
    rng = random.Random(seed)
    for i in range(n):
        score = None if rng.random() < fail_rate else round(rng.uniform(0, 10), 3)
        db.add(make(i, score, island=db.next_island(i)))
        db.maybe_migrate(i)


def sample_ids(db: ProgramDB, seed: int, n: int = 40) -> list[tuple[str, list[str]]]:
    rng = random.Random(seed)
    out = []
    for k in range(n):
        parent, insp = db.sample(rng, island=db.next_island(k), num_top=3, num_diverse=2)
        out.append((parent.id, [p.id for p in insp]))
    return out


def test_round_trip_of_every_field(tmp_path: Path) -> None:
    program = Program(
        id="abc123",
        code="def f():\n    return 'héllo ✓'\n",
        parent_id="p0",
        iteration=7,
        generation=3,
        island=1,
        score=-1.5e-300,
        metrics={"score": -1.5e-300, "runtime_s": 0.1 + 0.2, "big": 1e308},
        feedback="line1\nline2",
        artifacts={"stdout": "x" * 5000, "note": "ünïcode"},
        error=None,
        error_kind=None,
        stage=2,
        code_hash="ch",
        norm_hash="nh",
        func_hash="fh",
        complexity=12.25,
        mutation={
            "kind": "diff",
            "model": "m",
            "diff": "<<<<<<< SEARCH\n=======\n>>>>>>> REPLACE",
            "n": [1, 2],
        },
        isolation=["netns", "rlimit"],
        wall_s=0.125,
        created_at=1712345678.123456,
    )
    failed = Program(id="bad", code="x=", error="SyntaxError", error_kind="syntax", island=0, feedback="fb")
    with open_db(tmp_path / "p.db", num_islands=2) as db:
        db.add(program)
        db.add(failed)
        assert db.get("abc123") == program
        assert db.get("bad") == failed
        assert db.get("missing") is None
    with open_db(tmp_path / "p.db", num_islands=2) as db:  # and after reopening
        assert db.get("abc123") == program
        assert db.get("bad") == failed
        assert db.count() == 2 and db.count(ok_only=True) == 1


def test_nan_score_is_stored_but_never_ranked(tmp_path: Path) -> None:
    with open_db(tmp_path / "p.db") as db:
        db.add(make(0, 1.0))
        db.add(make(1, math.nan))
        got = db.get(make(1, 0).id)
        assert got is not None and got.score is not None and math.isnan(got.score)
        assert db.best().id == make(0, 0).id  # type: ignore[union-attr]


def test_duplicate_id_is_ignored_and_code_is_stored_once(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    with open_db(path) as db:
        first = make(0, 1.0, code="same code\n")
        db.add(first)
        db.add(first.model_copy(update={"score": 99.0}))  # same id: ignored
        db.add(make(1, 2.0, code="same code\n"))  # new id, same text: shares the code blob
        assert db.count() == 2
        assert db.get(first.id).score == 1.0  # type: ignore[union-attr]
    con = sqlite3.connect(path)
    assert con.execute("SELECT COUNT(*) FROM blobs").fetchone()[0] == 1
    con.close()


def test_add_is_durable_for_another_process_before_close(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    db = open_db(path)
    db.add(make(0, 3.5))
    db.set_state("rng", [1, 2, 3])
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from agentopt.evolve.db import ProgramDB
        from agentopt.task import Objective, SearchSpec
        db = ProgramDB.open(Path({str(path)!r}), objective=Objective(), search=SearchSpec())
        print(db.get({make(0, 0).id!r}).score, db.get_state("rng"), db.count())
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[0] == "3.5 [1, 2, 3] 1"
    db.close()


def test_kill_9_mid_write_reopens_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from agentopt.evolve.db import Program, ProgramDB
        from agentopt.task import Objective, SearchSpec
        db = ProgramDB.open(Path({str(path)!r}), objective=Objective(), search=SearchSpec(num_islands=2))
        i = 0
        while True:
            db.add(Program(id=f"p{{i}}", code="x = %d\\n" % i * 50, iteration=i, island=i % 2, score=float(i % 97)))
            db.set_state("last", i)
            if i == 200:
                print("ready", flush=True)
            i += 1
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(0.2)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    with open_db(path, num_islands=2) as db:
        assert db.count() >= 201
        last = db.get_state("last")
        assert db.count() in (last + 1, last + 2)  # the program add that was in flight may have landed
        assert db._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        db.sample(random.Random(0), island=1, num_top=2, num_diverse=1)
        db.add(make(10_000, 1.0))  # and it stays writable


def test_reopen_rebuilds_identical_indexes_and_samples(tmp_path: Path) -> None:
    search = {"num_islands": 3, "population_size": 40, "archive_size": 10, "migration_interval": 15}
    path = tmp_path / "p.db"
    live = open_db(path, **search)
    fill(live, 300)
    expected = sample_ids(live, seed=11)
    grids = [live.grid(i) for i in range(3)]
    live_pop = live._pop
    live.close()
    with open_db(path, **search) as again:
        pop = again._pop
        for a, b in zip(live_pop.islands, pop.islands, strict=True):
            assert (a.ranked, a.grid, a.cell_of, a.mapper, a.references, list(a.recent)) == (
                b.ranked,
                b.grid,
                b.cell_of,
                b.mapper,
                b.references,
                list(b.recent),
            )
        assert pop.archive() == live_pop.archive() and pop.size == live_pop.size
        assert [again.grid(i) for i in range(3)] == grids
        assert sample_ids(again, seed=11) == expected


def test_resumed_run_matches_uninterrupted_run(tmp_path: Path) -> None:
    """Stop half way (close), reopen, continue: same store contents and samples as one go."""
    search = {"num_islands": 2, "population_size": 30, "migration_interval": 10}

    def run(db_path: Path, stop_at: int | None) -> list[tuple[str, list[str]]]:
        db = open_db(db_path, **search)
        rng = random.Random(5)
        trace = []
        for i in range(120):
            if i == stop_at:
                state = rng.getstate()
                db.set_state("rng", [state[0], list(state[1]), state[2]])
                db.close()
                db = open_db(db_path, **search)
                v, internal, g = db.get_state("rng")
                rng.setstate((v, tuple(internal), g))
            db.maybe_migrate(i)
            if db.count():
                parent, insp = db.sample(rng, island=db.next_island(i), num_top=2, num_diverse=2)
                trace.append((parent.id, [p.id for p in insp]))
            score = None if rng.random() < 0.1 else rng.uniform(0, 1)
            db.add(make(i, score, island=db.next_island(i)))
        db.close()
        return trace

    assert run(tmp_path / "a.db", None) == run(tmp_path / "b.db", 57)


def test_islands_round_robin_and_migration_moves_top_fraction(tmp_path: Path) -> None:
    with open_db(tmp_path / "p.db", num_islands=3, migration_interval=10, migration_rate=0.25) as db:
        assert [db.next_island(i) for i in range(7)] == [0, 1, 2, 0, 1, 2, 0]
        for i in range(24):  # 8 per island, island 0 holds the best scores
            island = db.next_island(i)
            db.add(make(i, 100.0 + i if island == 0 else float(i), island=island))
        top0 = [db._pop.records[s].pid for s in db._pop.islands[0].top(2)]  # 25% of 8 = 2
        assert db.maybe_migrate(9) == 0  # round 0: nothing yet
        assert db.maybe_migrate(10) == 6  # 2 from each of 3 islands
        assert db.maybe_migrate(13) == 0  # same round again: no-op
        assert db.best(island=1).id == top0[0]  # type: ignore[union-attr]
        members1 = {db._pop.records[s].pid for s in db._pop.islands[1].members}
        assert set(top0) <= members1
        assert db.get(top0[0]).island == 0  # type: ignore[union-attr]  # lineage: same id, birth island kept
        moved = db.maybe_migrate(25)  # batches may skip the exact multiple: round 2 still runs once
        assert moved > 0 and db.maybe_migrate(29) == 0
    with open_db(tmp_path / "p.db", num_islands=3, migration_interval=10, migration_rate=0.25) as db:
        assert db.best(island=1).id == top0[0]  # type: ignore[union-attr]  # migrations replayed
        assert db.maybe_migrate(29) == 0  # round survives reopen


def test_single_island_never_migrates(tmp_path: Path) -> None:
    with open_db(tmp_path / "p.db", migration_interval=1) as db:
        fill(db, 10, fail_rate=0)
        assert db.maybe_migrate(50) == 0


def test_near_duplicate_rejection(tmp_path: Path) -> None:
    base = (
        "def solve(xs):\n"
        + "".join(f"    y{i} = sum(x * {i} for x in xs)\n" for i in range(40))
        + "    return y0\n"
    )
    with open_db(tmp_path / "p.db", num_islands=2) as db:
        db.add(make(0, 1.0, code=base))
        assert db.is_near_duplicate(base, island=0)
        assert db.is_near_duplicate(base.replace("    ", "\t"), island=0)  # formatting only
        assert not db.is_near_duplicate(
            base.replace("return y0", "return y1 - y2 * y3 + 7"), island=0, threshold=0.0
        )
        assert not db.is_near_duplicate("import math\nprint(math.pi)\n", island=0)
        assert not db.is_near_duplicate(base, island=1)  # other island has nothing yet
        broken = base.replace("return y0", "return y0 +")
        db.add(make(1, None, island=1, code=broken))
        assert not db.is_near_duplicate(broken.replace("y0 +", "y0 + 1"), island=1)  # repairs are welcome


def test_fix_mode_picks_most_recent_failure(tmp_path: Path) -> None:
    with open_db(tmp_path / "p.db", num_islands=2) as db:
        with pytest.raises(AgentoptError, match="empty"):
            db.sample(random.Random(0), island=0, num_top=2, num_diverse=2)
        db.add(make(0, None, island=0))
        db.add(make(2, None, island=0))
        parent, insp = db.sample(random.Random(0), island=0, num_top=2, num_diverse=2)
        assert parent.id == make(2, None).id and not parent.ok and insp == []
        parent, _ = db.sample(random.Random(0), island=1, num_top=2, num_diverse=2)  # empty island, none ok
        assert parent.id == make(2, None).id
        db.add(make(1, 5.0, island=1))  # an ok program elsewhere: island 0 still repairs, gets inspirations
        parent, insp = db.sample(random.Random(0), island=0, num_top=2, num_diverse=2)
        assert parent.id == make(2, None).id and [p.id for p in insp] == [make(1, 0).id]
        db.add(make(4, 1.0, island=0))  # island 0 has an ok program: normal mode
        for seed in range(20):
            parent, _ = db.sample(random.Random(seed), island=0, num_top=2, num_diverse=2)
            assert parent.ok


def test_empty_island_is_seeded_from_neighbour(tmp_path: Path) -> None:
    with open_db(tmp_path / "p.db", num_islands=3) as db:
        db.add(make(0, 1.0, island=0))
        parent, insp = db.sample(random.Random(0), island=2, num_top=2, num_diverse=2)
        assert parent.id == make(0, 0).id and insp == []


def test_best_with_minimize_and_ties(tmp_path: Path) -> None:
    with open_db(tmp_path / "p.db", Objective(metric="loss", direction="minimize"), num_islands=2) as db:
        db.add(make(0, 5.0))
        db.add(make(1, -2.0, island=1))
        db.add(make(3, -2.0, island=1))  # tie: the earlier iteration wins
        db.add(make(2, 9.0))
        db.add(make(4, None))
        assert db.best().id == make(1, 0).id  # type: ignore[union-attr]
        assert db.best(island=0).id == make(0, 0).id  # type: ignore[union-attr]
        assert [p.iteration for p in db.programs(order="score")] == [1, 3, 0, 2, 4]
        assert [p.iteration for p in db.programs(order="iteration")] == [0, 1, 2, 3, 4]
        assert [p.iteration for p in db.programs(order="insertion")] == [0, 1, 3, 2, 4]


def test_population_cap_never_evicts_the_best(tmp_path: Path) -> None:
    # One bin per dimension: one elite per island, so the cap binds on everything else.
    with open_db(tmp_path / "p.db", population_size=5, feature_bins=1) as db:
        db.add(make(0, 100.0))
        for i in range(1, 60):
            db.add(make(i, float(i % 10)))
        assert db._pop.size == 5
        assert db.best().id == make(0, 0).id  # type: ignore[union-attr]
        seen = {db.sample(random.Random(s), island=0, num_top=0, num_diverse=0)[0].id for s in range(50)}
        assert make(0, 0).id in seen and len(seen) <= 5
        assert db.count() == 60  # eviction is from the population, never from the store


def test_metric_feature_dimensions(tmp_path: Path) -> None:
    with open_db(
        tmp_path / "p.db", feature_dimensions=["score", "runtime"], feature_bins={"score": 2, "runtime": 3}
    ) as db:
        for i in range(12):
            db.add(make(i, float(i), metrics={"runtime": float(i % 3)}))
        cells = db.grid(0)
        assert all(len(c) == 2 and 0 <= c[0] < 2 and 0 <= c[1] < 3 for c in cells)
        assert len({c[1] for c in cells}) == 3  # the three runtimes land in three bins
        assert db.best().id in cells.values()  # type: ignore[union-attr]


def test_find_by_hash(tmp_path: Path) -> None:
    with open_db(tmp_path / "p.db") as db:
        db.add(make(0, 1.0, code_hash="c0", norm_hash="n"))
        db.add(make(1, 2.0, code_hash="c1", norm_hash="n"))
        assert db.find_by_hash(norm_hash="n").id == make(0, 0).id  # type: ignore[union-attr]
        assert db.find_by_hash(code_hash="c1").id == make(1, 0).id  # type: ignore[union-attr]
        assert db.find_by_hash(code_hash="c1", norm_hash="n").iteration == 1  # type: ignore[union-attr]
        assert db.find_by_hash(code_hash="zz") is None
        with pytest.raises(ValueError):
            db.find_by_hash()


def test_find_by_functional_hash_and_batched_state(tmp_path: Path) -> None:
    with open_db(tmp_path / "p.db") as db:
        db.add(make(0, 1.0, code_hash="c0", norm_hash="n0", func_hash="f"))
        db.add(make(1, 2.0, code_hash="c1", norm_hash="n1", func_hash="f"))
        db.add(make(2, 3.0, code_hash="c2", norm_hash="n2"))
        assert db.find_by_hash(func_hash="f").id == make(0, 0).id  # type: ignore[union-attr]
        assert db.find_by_hash(func_hash="f", norm_hash="n1").iteration == 1  # type: ignore[union-attr]
        assert db.get(make(2, 0).id).func_hash == ""  # type: ignore[union-attr]
        db.set_states({"a": 1, "b": {"x": [1, 2]}})
    with open_db(tmp_path / "p.db") as db:
        assert db.get_state("a") == 1 and db.get_state("b") == {"x": [1, 2]}
        assert db.find_by_hash(func_hash="f").id == make(0, 0).id  # type: ignore[union-attr]


def test_version_1_file_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with open_db(path) as db:
        db.add(make(0, 1.0, code_hash="c0", norm_hash="n0"))
    con = sqlite3.connect(path)  # turn it back into a schema-1 file
    con.execute("DROP INDEX programs_func_hash")
    for column in ("func_hash", "output_tail", "operator", "reused", "tune_evals", "tune_gain"):
        con.execute(f"ALTER TABLE programs DROP COLUMN {column}")
    con.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    with open_db(path) as db:
        assert db.get(make(0, 0).id).score == 1.0  # type: ignore[union-attr]
        db.add(make(1, 2.0, code_hash="c1", norm_hash="n1", func_hash="f1"))
        assert db.find_by_hash(func_hash="f1").iteration == 1  # type: ignore[union-attr]
        assert db.best().iteration == 1  # type: ignore[union-attr]
    con = sqlite3.connect(path)
    assert con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == "4"
    con.close()


def test_version_2_file_gains_output_tail_in_place(tmp_path: Path) -> None:
    path = tmp_path / "v2.db"
    with open_db(path) as db:
        db.add(make(0, 1.0, code_hash="c0", norm_hash="n0"))
    con = sqlite3.connect(path)  # a schema-2 file: no output_tail column, no operator columns
    for column in ("output_tail", "operator", "reused", "tune_evals", "tune_gain"):
        con.execute(f"ALTER TABLE programs DROP COLUMN {column}")
    con.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    with open_db(path) as db:
        assert db.get(make(0, 0).id).output_tail == ""  # type: ignore[union-attr]
        failed = make(1, 0.0, code_hash="c1", norm_hash="n1").model_copy(
            update={"score": None, "error": "boom", "error_kind": "crash", "output_tail": "Traceback ...\nboom"}
        )
        db.add(failed)
    with open_db(path) as db:
        assert db.get(failed.id).output_tail == "Traceback ...\nboom"  # type: ignore[union-attr]


def test_llm_calls_rejections_and_state(tmp_path: Path) -> None:
    with open_db(tmp_path / "p.db") as db:
        db.record_llm_call(
            {"model": "m", "usage": {"prompt_tokens": 3}, "headers": {"Authorization": "Bearer sk-x"}}
        )
        db.record_llm_call({"model": "n", "api_key": "sk-secret"})
        db.record_rejection(iteration=3, parent_id="p", reason="bad diff", reply_excerpt="y" * 10_000)
        db.set_state("k", {"a": [1, 2.5, None]})
        db.set_state("k", {"a": 1})
    with open_db(tmp_path / "p.db") as db:
        calls = db.llm_calls()
        assert (
            calls[0]["usage"] == {"prompt_tokens": 3} and calls[0]["headers"]["Authorization"] == "<redacted>"
        )
        assert "sk-secret" not in json.dumps(calls)
        (rej,) = db.rejections()
        assert rej["iteration"] == 3 and rej["reason"] == "bad diff" and len(rej["reply_excerpt"]) <= 4000
        assert db.get_state("k") == {"a": 1} and db.get_state("nope", 7) == 7


def test_open_rejects_foreign_newer_or_mismatched_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(ProgramDBError, match="not an agentopt program database") as err:
        open_db(junk)
    assert "\n" not in str(err.value)
    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE t(x)")
    con.commit()
    con.close()
    with pytest.raises(ProgramDBError, match="not an agentopt"):
        open_db(other)
    newer = tmp_path / "newer.db"
    open_db(newer).close()
    con = sqlite3.connect(newer)
    con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    with pytest.raises(ProgramDBError, match="newer agentopt"):
        open_db(newer)
    run = tmp_path / "run.db"
    open_db(run, num_islands=2).close()
    with pytest.raises(ProgramDBError, match="num_islands"):
        open_db(run, num_islands=3)
    with pytest.raises(ProgramDBError, match="minimize"):
        open_db(run, Objective(direction="minimize"), num_islands=2)
    open_db(run, num_islands=2, iterations=500).close()  # non-structural settings may change


_DETERMINISM_SCRIPT = """
import json, random, sys, tempfile
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_db import fill, open_db, sample_ids
with tempfile.TemporaryDirectory() as tmp:
    db = open_db(Path(tmp) / "p.db", num_islands=3, population_size=50, migration_interval=20)
    fill(db, 250, seed=3)
    print(json.dumps({{"samples": sample_ids(db, seed=9), "grids": [sorted(db.grid(i).items()) for i in range(3)],
                      "best": db.best().id}}))
    db.close()
"""


def test_determinism_across_fresh_processes() -> None:
    outputs = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        script = _DETERMINISM_SCRIPT.format(tests=str(REPO / "tests"))
        out = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, env=env, timeout=120
        )
        assert out.returncode == 0, out.stderr
        outputs.append(out.stdout)
    assert outputs[0] == outputs[1]
    assert len(json.loads(outputs[0])["samples"]) == 40


def test_batch_is_one_transaction_that_keeps_each_write_atomic(tmp_path):
    """ProgramDB.batch (the controller's commit + next start): everything inside commits together
    at the end; a write that fails inside leaves nothing of itself, and what succeeded before an
    exception is committed all the same (as separate transactions would have left it)."""
    db = open_db(tmp_path / "p.db")
    with db.batch():
        db.add(make(0, 1.0), states={"next_iteration": 1})
        db.set_state("start/5", {"plan": "x"})
        other = sqlite3.connect(tmp_path / "p.db")
        assert other.execute("SELECT COUNT(*) FROM programs").fetchone() == (0,)  # not yet visible
        with db.batch():  # nested: joins the open one
            db.set_state("start/6", {"plan": "y"})
    assert other.execute("SELECT COUNT(*) FROM programs").fetchone() == (1,)
    assert {k for (k,) in other.execute("SELECT key FROM state")} >= {"next_iteration", "start/5", "start/6"}
    other.close()
    twin = make(1, 2.0)
    with pytest.raises(RuntimeError):
        with db.batch():
            db.set_state("kept", 1)
            with pytest.raises(TypeError):  # fails after its inserts: rolled back to its savepoint
                db.add(make(2, 3.0), states={"lost": object()})
            db.add(twin, states={"next_iteration": 2})
            raise RuntimeError("after the writes")
    db.close()
    db = open_db(tmp_path / "p.db")
    assert db.count() == 2 and db.get_state("kept") == 1 and db.get_state("next_iteration") == 2
    assert db.get_state("lost") is None and db.get(make(2, 3.0).id) is None
    db.close()


def test_compressed_rows_read_back_with_plain_zlib():
    """_compress sizes deflate's window to the input (a small program's row costs ~10x less to
    pack); the stream must stay plain zlib and never look like a raw JSON row."""
    import zlib

    from agentopt.evolve.db import _compress, _pack, _unpack

    for size in (0, 1, 300, 5000, 100_000):
        data = bytes(random.Random(size).choices(b"def f(x):\n    return x * 2 + 1\n", k=size))
        packed = _compress(data)
        assert zlib.decompress(packed) == data and packed[:1] != b"{"
    fields = {"feedback": "x" * 500, "metrics": {"a": 1.0}}
    assert _unpack(_pack(fields)) == fields
