"""Multi-file candidates: several source files stored as ONE program text (a bundle).

The store, the hashes, lineage, resume and the report all work on one ``Program.code``
string, so a multi-file candidate is packed into a single text with a header line before
each file::

    # ==== agentopt file: main.py ====
    ...main.py...
    # ==== agentopt file: lib/helper.py ====
    ...helper.py...

The header is a comment line in Python syntax so an all-Python bundle still reads as code in
reports and diffs. It never reaches a file: :func:`write_bundle` writes each file at its
relative path inside a directory, and that directory is the ``program_path`` the evaluator
receives. Single-file tasks never produce a bundle, so nothing changes for them.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path, PurePosixPath

from agentopt.errors import AgentoptError
from agentopt.evolve.hashing import code_complexity, normalized_code_hash

__all__ = [
    "BundleError",
    "bundle_complexity",
    "bundle_norm_hash",
    "is_bundle",
    "pack",
    "read_bundle",
    "unpack",
    "write_bundle",
]

_PREFIX = "# ==== agentopt file: "
_SUFFIX = " ===="
_HEADER_RE = re.compile(r"^# ==== agentopt file: (?P<path>.+?) ====$")


class BundleError(AgentoptError, ValueError):
    """A multi-file program cannot be packed, parsed or written (one-line reason)."""


def is_bundle(code: str) -> bool:
    """True for a packed multi-file program (it starts with a file header line)."""
    return code.startswith(_PREFIX)


def _check_relpath(path: str) -> str:
    """Relative POSIX path inside the program directory; rejects absolute paths and ``..``,
    so a bundle can never write outside the directory it is unpacked into."""
    pure = PurePosixPath(path.replace("\\", "/"))
    if not path or pure.is_absolute() or ".." in pure.parts or str(pure) in (".", ""):
        raise BundleError(f"bad file name in a multi-file program: {path!r} (must be relative, without '..')")
    return str(pure)


def pack(files: dict[str, str]) -> str:
    """One bundle text from ``{relative path: content}`` (order kept). Every file ends with a
    newline in the bundle (one is added when missing) so the next header stays on its line."""
    if not files:
        raise BundleError("a multi-file program needs at least one file")
    parts: list[str] = []
    for path, content in files.items():
        rel = _check_relpath(path)
        if any(_HEADER_RE.match(line) for line in content.splitlines()):
            raise BundleError(f"{rel}: contains a line that looks like an agentopt bundle header")
        if content and not content.endswith("\n"):
            content += "\n"
        parts.append(f"{_PREFIX}{rel}{_SUFFIX}\n{content}")
    return "".join(parts)


def unpack(code: str) -> dict[str, str]:
    """``{relative path: content}`` of a bundle, in stored order."""
    if not is_bundle(code):
        raise BundleError("not a multi-file program (no file header on the first line)")
    files: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in code.splitlines(keepends=True):
        match = _HEADER_RE.match(line.rstrip("\r\n"))
        if match:
            rel = _check_relpath(match.group("path"))
            if rel in files:
                raise BundleError(f"file {rel!r} appears twice in a multi-file program")
            current = files[rel] = []
        elif current is not None:
            current.append(line)
    return {path: "".join(lines) for path, lines in files.items()}


def read_bundle(root: Path, files: list[Path]) -> str:
    """Pack the task's program files (paths relative to ``root``) from disk."""
    out: dict[str, str] = {}
    for rel in files:
        path = root / rel
        try:
            out[PurePosixPath(Path(rel).as_posix()).as_posix()] = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise BundleError(f"{path}: not a UTF-8 text file; list it in extra_files instead") from None
        except OSError as err:
            raise BundleError(f"{path}: cannot read ({err.strerror or err})") from None
    return pack(out)


def write_bundle(code: str, dest: Path) -> Path:
    """Write every file of the bundle under ``dest`` (created); returns ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for rel, content in unpack(code).items():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
    return dest


def bundle_norm_hash(code: str, simplify: bool = True) -> str:
    """Normalized hash of a bundle: the per-file normalized hashes (comments, formatting and,
    with ``simplify``, dead code ignored in each file, see :func:`normalized_code_hash`)
    together with the file names."""
    digest = hashlib.sha256(b"bundle:")
    for rel, content in unpack(code).items():
        digest.update(f"{rel}\0{normalized_code_hash(content, simplify)}\n".encode())
    return digest.hexdigest()


def bundle_complexity(code: str) -> float:
    """Sum of the files' structural sizes (a header is not code)."""
    return sum(code_complexity(content) for content in unpack(code).values())
