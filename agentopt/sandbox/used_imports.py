"""Which requirements does the evaluator (or the program) actually import?

OpenEvolve example folders often carry a ``requirements.txt`` for the whole example (plotting,
notebooks) while the evaluator imports two of its packages. A missing package that nothing
imports must not stop the run; one that is imported must, before the first evaluation. The
answer comes from the files' ASTs (never imported), and from a distribution -> module table for
the common packages whose import name differs from their name on PyPI.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from pathlib import Path

# PyPI distribution (canonical form) -> top-level modules it provides, where they differ.
_MODULES: dict[str, tuple[str, ...]] = {
    "scikit-learn": ("sklearn",),
    "scikit-image": ("skimage",),
    "pyyaml": ("yaml",),
    "pillow": ("PIL",),
    "opencv-python": ("cv2",),
    "opencv-python-headless": ("cv2",),
    "opencv-contrib-python": ("cv2",),
    "beautifulsoup4": ("bs4",),
    "python-dateutil": ("dateutil",),
    "attrs": ("attr", "attrs"),
    "protobuf": ("google",),
    "pytorch": ("torch",),
    "faiss-cpu": ("faiss",),
    "faiss-gpu": ("faiss",),
    "llama-cpp-python": ("llama_cpp",),
    "python-dotenv": ("dotenv",),
    "msgpack-python": ("msgpack",),
    "pyzmq": ("zmq",),
    "jax-cuda12-plugin": ("jax",),
}
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def modules_for(requirement: str) -> set[str]:
    """Import names a requirement string (``'scikit-learn>=1.0'``) can provide."""
    match = _NAME.match(requirement)
    if not match:
        return set()
    canonical = re.sub(r"[-_.]+", "-", match.group(1)).lower()
    names = set(_MODULES.get(canonical, ()))
    names.add(canonical.replace("-", "_"))
    if canonical.startswith("python-"):
        names.add(canonical[len("python-") :].replace("-", "_"))
    return names


def imported_modules(paths: Iterable[Path]) -> set[str]:
    """Top-level module names imported anywhere in these Python files (unreadable ones skipped)."""
    found: set[str] = set()
    for path in paths:
        try:
            tree = ast.parse(Path(path).read_text(encoding="utf-8", errors="replace"))
        except (OSError, SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module.split(".")[0])
            elif isinstance(node, ast.Call) and _is_dynamic_import(node):
                found.add(str(node.args[0].value).split(".")[0])  # type: ignore[attr-defined]
    return found


def _is_dynamic_import(node: ast.Call) -> bool:
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    return (
        name in ("import_module", "__import__")
        and bool(node.args)
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    )


def split_used(missing: list[str], sources: Iterable[Path]) -> tuple[list[str], list[str]]:
    """``(used, unused)``: missing requirements some source imports, and those none does.

    Case is ignored when matching (``PIL`` vs ``pil``); a requirement whose import name is
    unknown and unseen counts as unused, which costs at worst an ImportError in the evaluator's
    own output (now stored and shown per candidate) instead of a refused run."""
    imported = {name.lower() for name in imported_modules(sources)}
    used = [req for req in missing if {m.lower() for m in modules_for(req)} & imported]
    return used, [req for req in missing if req not in used]
