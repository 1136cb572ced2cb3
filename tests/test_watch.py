"""Watching and inspecting a run: the read-only RunView, the terminal commands, the HTML
report on a running run, and the `agentopt watch` HTTP server (the browser tests are in
test_watch_browser.py). Runs are written through the real ProgramDB (tests/watch_fixtures)."""

from __future__ import annotations

import json
import sqlite3
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner
from watch_fixtures import HOSTILE, RunWriter

from agentopt.cli import app
from agentopt.evolve.db import ProgramDB
from agentopt.evolve.runview import RunView, RunViewError, failure_reason, operator_of
from agentopt.watch.server import CSP, WatchServer

N = 90
HOSTILE_AT = 7


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunWriter]:
    """A stopped 90-program run with 2 islands, migrations, failures, LLM calls, rejections."""
    writer = RunWriter(tmp_path_factory.mktemp("runs") / "seed0")
    writer.add(N, hostile_at=HOSTILE_AT)
    yield writer
    writer.close()


def test_view_matches_the_engine_store(run: RunWriter) -> None:
    db: ProgramDB = run.db
    view = RunView(run.run_dir)
    info = view.info()
    programs = list(db.programs(order="iteration"))
    ok = [p for p in programs if p.ok]
    assert (info.programs, info.ok, info.failed) == (N, len(ok), N - len(ok))
    assert info.best_id == db.best().id and info.best_score == db.best().score
    assert info.next_iteration == N and info.target_iterations == 100 and info.state == "running"
    # MAP-Elites grids: the incremental replay equals the engine's own (migrations included).
    grids = view.grids()
    assert db.get_state("__migration_epoch") >= 2
    for island in range(2):
        assert {cell: pid for cell, (pid, _) in grids[island].cells.items()} == db.grid(island)
    # Operators: children, failures, improvements over the parent, computed by brute force here.
    by_id = {p.id: p for p in programs}
    expected: dict[str, list[int]] = {}
    for p in programs[1:]:
        row = expected.setdefault(operator_of(p.mutation), [0, 0, 0])
        parent = by_id[p.parent_id]
        row[0] += 1
        row[1] += 0 if p.ok else 1
        row[2] += 1 if p.ok and (parent.score is None or p.score > parent.score) else 0
    assert {k: [s.children, s.failed, s.improved] for k, s in view.operators().items()} == expected
    # The server's background warm-up (small chunks here) folds to the same tallies.
    warm = RunView(run.run_dir)
    warm.start_warming(chunk=7)
    assert warm._warmer is not None
    warm._warmer.join(60)
    assert not warm.indexing and warm.operators(wait=False) == view.operators()
    assert warm.failures(wait=False) == view.failures() and warm.grids(wait=False) == grids
    # Failures grouped by reason, numbers masked.
    groups = {g.reason: g.count for g in view.failures()}
    assert groups == {
        "exception: ZeroDivisionError: division by zero at line N": sum(1 for p in programs if p.error_kind == "exception"),
        "timeout after N s": sum(1 for p in programs if p.error_kind == "timeout"),
    }
    # Score chart: the best-so-far steps are exactly the running best.
    series = view.score_series()
    best, steps = None, []
    for p in ok:
        if best is None or p.score > best:
            best = p.score
            steps.append((p.iteration, p.score))
    assert series.best_steps == steps and len(series.points) == len(ok)
    assert [by_id[pid].score for pid in series.step_ids] == [score for _, score in steps]
    dense = view.score_series(max_points=10, bins=(7, 5))
    assert sum(c for _, _, c in dense.density) == len(ok) and not dense.points
    assert all(0 <= x < 7 and 0 <= y < 5 for x, y, _ in dense.density)
    # Per model LLM usage (the fixture's api_key was redacted by the store, never shown).
    usage = {u["model"]: u["calls"] for u in view.llm_usage()}
    assert sum(usage.values()) == info.llm_calls > 0 and set(usage) == {"m1", "m2"}


def test_view_pages_ids_and_is_read_only(run: RunWriter) -> None:
    view = RunView(run.run_dir)
    page1, total = view.programs(limit=10)
    page2, _ = view.programs(limit=10, offset=10)
    assert total == N and len(page1) == 10 and not {r.id for r in page1} & {r.id for r in page2}
    scores = [r.score for r in page1 + page2]
    assert scores == sorted(scores, reverse=True)
    failed, n_failed = view.programs(failed=True, limit=100)
    assert n_failed == view.info().failed and all(not r.ok and r.error for r in failed)
    island1, _ = view.programs(island=1, limit=100)
    assert island1 and all(r.island == 1 for r in island1)
    full = page1[0].id
    assert view.resolve_id(full[:6]) == full == view.resolve_id("best")
    assert view.program(full).code.startswith("# EVOLVE-BLOCK-START")
    chain = view.lineage(full)
    assert chain[0].parent_id is None and chain[-1].id == full
    with pytest.raises(RunViewError, match="no program"):
        view.resolve_id("ffffffffff")
    with pytest.raises(RunViewError, match="not a program id"):
        view.resolve_id("x; DROP TABLE programs")
    with pytest.raises(sqlite3.OperationalError, match="readonly|read-only"):
        view._conn().execute("DELETE FROM programs")
    run.add(1)  # the writer is never blocked by an open view
    assert view.info().programs == N + 1
    assert len(view.failures()) == 2 and sum(s.children for s in view.operators().values()) == N


def test_output_tail_of_a_failed_candidate_is_shown(tmp_path: Path) -> None:
    writer = RunWriter(tmp_path / "r")
    writer.add(12)
    writer.close()
    failed = RunView(tmp_path / "r").programs(failed=True)[0][0]
    with sqlite3.connect(tmp_path / "r" / "programs.db") as conn:
        conn.execute("UPDATE programs SET output_tail = ? WHERE id = ?", ("Traceback: boom\x1b[31m", failed.id))
    view = RunView(tmp_path / "r")
    assert view.output_tail(failed.id).startswith("Traceback: boom")
    result = CliRunner().invoke(app, ["show", str(tmp_path / "r"), failed.id[:8], "--no-code"])
    assert result.exit_code == 0 and "guest output (tail)" in result.output and "Traceback: boom" in result.output
    assert "\x1b[31m" not in result.output


def test_failure_reason_masks_numbers_like_the_report() -> None:
    a = failure_reason({"error": "ZeroDivisionError at /tmp/x/cand.py line 12", "error_kind": "exception"})
    b = failure_reason({"error": "ZeroDivisionError at /tmp/y/cand.py line 40", "error_kind": "exception"})
    assert a == b == "exception: ZeroDivisionError at cand.py line N"
    assert failure_reason({"error": "timeout after 5 s", "error_kind": "timeout"}) == "timeout after N s"


# ------------------------------------------------------------------------------------ terminal
def test_programs_show_diff_commands(run: RunWriter) -> None:
    cli = CliRunner()
    d = str(run.run_dir)
    listed = cli.invoke(app, ["programs", d, "--top", "3", "--json"])
    assert listed.exit_code == 0, listed.output
    data = json.loads(listed.output)
    assert data["total"] >= N and len(data["programs"]) == 3
    top = data["programs"][0]["id"]
    failed = json.loads(cli.invoke(app, ["programs", d, "--failed", "--json", "-n", "2"]).output)["programs"]
    assert failed and all(p["error"] for p in failed)
    table = cli.invoke(app, ["programs", d, "--failed", "--island", "1"])
    assert table.exit_code == 0 and "failed programs on island 1" in table.output
    hostile = run.db.programs(order="iteration")
    hostile_id = next(p.id for p in hostile if p.iteration == HOSTILE_AT)
    shown = cli.invoke(app, ["show", d, hostile_id[:7]])
    assert shown.exit_code == 0 and HOSTILE in shown.output  # shown as text, markup not interpreted
    assert "lineage" in shown.output and "evaluator feedback" in shown.output
    as_json = json.loads(cli.invoke(app, ["show", d, "best", "--json"]).output)
    assert as_json["id"] == top and as_json["lineage"][-1] == top
    same = cli.invoke(app, ["diff", d, top, top[:6]])
    assert same.exit_code == 0 and "same code" in same.output
    differ = cli.invoke(app, ["diff", d, top, hostile_id])
    assert differ.exit_code == 1 and "@@" in differ.output and "+++" in differ.output
    bad = cli.invoke(app, ["show", d, "nothex!"])
    assert bad.exit_code == 2 and "not a program id" in bad.output and "Traceback" not in bad.output


def test_report_on_a_running_run_is_a_snapshot_with_charts(run: RunWriter, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["report", str(run.run_dir), "--html", str(out)])
    assert result.exit_code == 0, result.output
    assert "snapshot" in result.output and "running" in result.output
    page = out.read_text()
    assert "Snapshot of a running run" in page
    assert page.count("<svg") == 3 and ">iteration</text>" in page and "complexity (6 bins)" in page
    assert "division by zero at line N" in page and "SEARCH block not found" in page
    assert "<script" not in page.replace("&lt;script", "")  # the hostile reply excerpt is escaped
    assert "sk-secret" not in page


# ------------------------------------------------------------------------------------ server
def _get(url: str, host: str | None = None) -> tuple[int, dict[str, str], str]:
    req = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 (loopback test server)
            return resp.status, dict(resp.headers), resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read().decode()


@pytest.fixture(scope="module")
def server(run: RunWriter) -> Iterator[WatchServer]:
    srv = WatchServer(run.run_dir.parent)  # a folder of runs: the multi-run listing
    srv.serve_in_thread()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_server_pages_escape_candidate_text_and_send_a_strict_csp(run: RunWriter, server: WatchServer) -> None:
    base = server.url.rstrip("/")
    status, headers, body = _get(base + "/")
    assert status == 200 and "seed0" in body and "running" in body
    assert headers["Content-Security-Policy"] == CSP and "script-src 'self'" in CSP and "unsafe" not in CSP
    listing = json.loads(_get(base + "/api/runs")[2])
    assert listing[0]["folder"] == "seed0" and listing[0]["programs"] >= N
    status, _, dash = _get(base + "/r/seed0/")
    assert status == 200 and 'data-field="iteration"' in dash and "MAP-Elites" in dash and "<svg" in dash
    hostile_id = next(p.id for p in run.db.programs(order="iteration") if p.iteration == HOSTILE_AT)
    for page in (f"/r/seed0/program/{hostile_id}", "/r/seed0/failures", "/r/seed0/lineage"):
        status, _, body = _get(base + page)
        assert status == 200, page
        assert "<script>alert" not in body and "onerror=alert" not in body.replace("onerror=alert(1)&gt;", "")
        assert body.count("<script") == 1  # only /static/watch.js
    assert "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;" in _get(base + f"/r/seed0/program/{hostile_id}")[2]
    status, _, body = _get(base + "/r/seed0/programs?failed=1&island=1&order=iteration&page=1")
    assert status == 200 and "failed" in body
    body = _get(base + "/r/seed0/programs?order=iteration&it=60")[2]  # jump to the page holding iteration 60
    assert "page 2 of" in body and "<td>60</td>" in body
    assert json.loads(_get(base + "/r/seed0/api/status")[2])["programs"] >= N
    status, _, body = _get(base + "/r/seed0/program/0123456789abcdef")
    assert status == 404 and "no program" in body and "Traceback" not in body
    assert _get(base + "/r/..%2f..%2fetc/")[0] == 404
    assert _get(base + "/static/watch.js")[1]["Content-Type"].startswith("text/javascript")
    # DNS rebinding: a request naming another host is refused.
    assert _get(base + "/r/seed0/", host="evil.example:80")[0] == 421


def test_watch_command_serves_until_ctrl_c(run: RunWriter) -> None:
    """The real console command: prints its loopback URL, serves, exits 0 on Ctrl-C."""
    import os
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "agentopt.cli", "watch", str(run.run_dir), "--port", "0"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert "http://127.0.0.1:" in line, line
        url = line.split("at ", 1)[1].split()[0]
        status, _, body = _get(url)
        assert status == 200 and "seed0" in body
        assert _get(url + "favicon.ico")[0] == 204
    finally:
        proc.send_signal(signal.SIGINT)
        started = time.monotonic()
        assert proc.wait(60) == 0 and time.monotonic() - started < 60
    bad = CliRunner().invoke(app, ["watch", str(run.run_dir / "missing")])
    assert bad.exit_code == 2 and "no such run folder" in bad.output


def test_run_state_finished_running_stopped(tmp_path: Path) -> None:
    import os

    from agentopt.evolve.summary import RunSummary

    d = tmp_path / "r"
    writer = RunWriter(d)
    writer.add(5)
    writer.close()  # like the controller: the store is closed (checkpointed) right after summary.json
    assert RunView(d).info().state == "running"  # recent writes, no summary: a run in progress
    summary = RunSummary(task="toy", run_dir=str(d), objective="score", direction="maximize", stop_reason="done!")
    (d / "summary.json").write_text(summary.model_dump_json())
    for _ in range(2):  # readers leave an empty -wal behind; that is not a write
        view = RunView(d)
        assert (view.info().state, view.info().state_detail) == ("finished", "done!")
        view.close()
    result = CliRunner().invoke(app, ["report", str(d), "--html", str(tmp_path / "r.html")])
    assert result.exit_code == 0 and "snapshot" not in result.output and "done!" in result.output
    (d / "summary.json").unlink()
    old = os.path.getmtime(d / "programs.db") - 3600
    os.utime(d / "programs.db", (old, old))
    info = RunView(d).info()
    assert info.state == "stopped" and "agentopt resume" in info.state_detail


def test_chart_axes_ticks_and_minimize() -> None:
    from agentopt.evolve.charts import nice_ticks, score_chart
    from agentopt.evolve.runview import ScoreSeries

    unit = nice_ticks(0, 1)
    assert len(unit) == 6 and unit[0] == 0.0 and abs(unit[-1] - 1.0) < 1e-9
    ticks = nice_ticks(-3.7, 118.2)
    assert ticks[0] >= -3.7 and ticks[-1] <= 118.2 and 4 <= len(ticks) <= 8
    assert len({round(b - a, 9) for a, b in zip(ticks, ticks[1:], strict=False)}) == 1  # even steps
    series = ScoreSeries(
        (0, 500), (0.5, 9.0), [(0, 9.0), (40, 4.0), (300, 0.5)], density=[(0, 59, 3), (80, 10, 1)],
        bins=(160, 60), count=4, step_ids=["a" * 16, "b" * 16, "<x>"],
    )  # fmt: skip
    svg = score_chart(series, "latency <ms>", maximize=False, link=lambda pid: f"/p/{pid}")
    assert "best so far (min)" in svg and ">iteration</text>" in svg and "latency &lt;ms&gt;" in svg
    assert svg.count("<rect") == 1 + 2 and 'href="/p/&lt;x&gt;"' in svg  # frame + 2 density cells
    assert ">500</text>" in svg and ">0</text>" in svg  # x ticks at both ends


def test_watch_reports_a_busy_port_in_one_line(run: RunWriter) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = CliRunner().invoke(app, ["watch", str(run.run_dir), "--port", str(port)])
    assert result.exit_code == 2 and "cannot listen on 127.0.0.1" in result.output and "Traceback" not in result.output
