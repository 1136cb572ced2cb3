"""Regenerate the screenshots in this folder: `python docs/watch/make_screenshots.py`.

Writes two synthetic runs (through the real ProgramDB, as tests/watch_fixtures does), serves
them with `agentopt watch`, and captures pages with headless Chromium (tests/chromium_cdp).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "tests"))

from chromium_cdp import Browser, find_chromium  # noqa: E402
from watch_fixtures import RunWriter  # noqa: E402

from agentopt.watch.server import WatchServer  # noqa: E402


def main() -> None:
    binary = find_chromium()
    if binary is None:
        raise SystemExit("needs chromium on PATH (apt-get install -y chromium)")
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp) / "runs"
        for seed, n in ((0, 160), (1, 120)):
            w = RunWriter(runs / f"seed{seed}", seed=seed, iterations=200)
            w.add(n, hostile_at=7)
            w.close()
        server = WatchServer(runs)
        server.serve_in_thread()
        base = server.url.rstrip("/")
        try:
            with Browser(binary, width=1200, height=900) as b:
                for name, path in [
                    ("runs", "/"),
                    ("dashboard", "/r/seed0/"),
                    ("program", "/r/seed0/program/best"),
                    ("failures", "/r/seed0/failures"),
                ]:
                    b.goto(base + path)
                    b.wait_for("!document.body.innerText.includes('counting')", timeout=30)
                    b.screenshot(HERE / f"{name}.png")
                    print("wrote", HERE / f"{name}.png")
        finally:
            server.shutdown()
            server.server_close()


if __name__ == "__main__":
    main()
