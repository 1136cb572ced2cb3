"""Where the guest-side files (runner, evaluator helpers, bundled tasks) live.

In a source checkout (editable install) they sit at the repository root next to the
``agentopt`` package; in a wheel they are force-included under ``agentopt/_guest``.
Host code never imports them; it only hands their paths to a sandbox.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def guest_dir(name: str) -> Path:
    """Return the directory ``sandboxes``, ``evaluators`` or ``tasks`` for this install."""
    for candidate in (_PACKAGE_DIR / "_guest" / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"agentopt guest directory {name!r} not found (broken install?)")


def runner_path() -> Path:
    """The guest runner script executed inside every sandbox."""
    return guest_dir("sandboxes") / "runner.py"


def evaluator_lib_dir() -> Path:
    """Directory put on the guest's sys.path: ``agentopt_guest`` helpers, the openevolve shim."""
    return guest_dir("evaluators")
