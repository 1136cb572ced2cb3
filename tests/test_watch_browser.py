"""`agentopt watch` in a real browser: headless Chromium from the OS packages, driven over the
DevTools protocol (tests/chromium_cdp.py). Skips with a printed reason where Chromium is missing
(.ci/run installs it with apt)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from chromium_cdp import Browser, CDPError, find_chromium
from watch_fixtures import RunWriter

from agentopt.watch.server import WatchServer

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH (apt-get install -y chromium; .ci/run does it)"
)
ITERATION = 'Number(document.querySelector(\'[data-field="iteration"]\').textContent)'


@pytest.fixture
def browser() -> Iterator[Browser]:
    assert CHROMIUM is not None
    try:
        b = Browser(CHROMIUM)
    except (CDPError, OSError) as err:
        pytest.skip(f"chromium did not start: {err}")
    yield b
    b.close()


def test_live_dashboard_program_page_and_loopback_only(tmp_path: Path, browser: Browser) -> None:
    writer = RunWriter(tmp_path / "live")
    writer.add(20, hostile_at=7)
    hostile = next(p.id for p in writer.db.programs(order="iteration") if p.iteration == 7)
    server = WatchServer(tmp_path / "live")
    server.serve_in_thread()
    writer.start(every_s=0.3)  # the run keeps going while the page is open
    try:
        browser.goto(server.url)
        assert browser.eval("location.pathname") == "/r/live/"
        first = browser.eval(ITERATION)
        assert first >= 20
        # The page itself (not a reload by the test) shows the run advancing.
        later = browser.wait_for(f"{ITERATION} > {first} && {ITERATION}", timeout=60)
        assert later > first
        browser.wait_for("document.getElementById('live-state').textContent.includes('live')", timeout=30)
        # The live refresh swaps in a re-rendered section: the program count follows too.
        browser.wait_for(
            f"Number(document.querySelector('[data-field=\"programs\"]').textContent) > {first}", timeout=60
        )
        assert browser.eval("document.querySelectorAll('svg').length") >= 2  # score chart + grids
        # Open a program page by following the dashboard's link to the best program.
        best_href = browser.eval("document.querySelector('a.pid').getAttribute('href')")
        assert best_href.startswith("/r/live/program/")
        browser.goto(server.url.rstrip("/") + best_href)
        assert "Program" in browser.eval("document.querySelector('h1').textContent")
        # A candidate's <script> is shown as text and never runs.
        browser.goto(server.url.rstrip("/") + f"/r/live/program/{hostile}")
        code = browser.eval("document.querySelector('pre.code').textContent")
        assert '<script>alert("pwned")</script>' in code
        assert browser.eval("document.scripts.length") == 1
        assert browser.eval("document.scripts[0].getAttribute('src')") == "/static/watch.js"
        assert browser.eval("document.querySelectorAll('img').length") == 0  # the <img onerror> is text too
    finally:
        writer.close()
        server.shutdown()
        server.server_close()
    urls = browser.requested_urls()
    assert urls, "the browser made no request?"
    origin = urlsplit(server.url)
    leaving = [u for u in urls if urlsplit(u).hostname != "127.0.0.1" or urlsplit(u).port != origin.port]
    assert not leaving, f"requests left loopback: {leaving}"


def test_runs_listing_side_by_side(tmp_path: Path, browser: Browser) -> None:
    for seed in (0, 1):
        w = RunWriter(tmp_path / f"seed{seed}", seed=seed)
        w.add(8 + seed * 4)
        w.close()
    server = WatchServer(tmp_path)
    server.serve_in_thread()
    try:
        browser.goto(server.url)
        rows = browser.eval("Array.from(document.querySelectorAll('tr')).slice(1).map(r => r.cells[0].textContent)")
        assert rows == ["seed0", "seed1"]
        # A run started after the server did appears on the next poll.
        late = RunWriter(tmp_path / "seed2", seed=2)
        late.add(3)
        late.close()
        started = time.monotonic()
        browser.wait_for("document.querySelectorAll('tr').length === 4", timeout=30)
        assert time.monotonic() - started < 30
        browser.goto(server.url.rstrip("/") + "/r/seed1/")
        assert browser.eval("document.querySelector('[data-field=\"programs\"]').textContent") == "12"
    finally:
        server.shutdown()
        server.server_close()
