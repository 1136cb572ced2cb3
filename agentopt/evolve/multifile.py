"""Apply an LLM reply to a multi-file candidate (a bundle, see :mod:`agentopt.evolve.bundle`).

Diffs: each SEARCH/REPLACE hunk edits the file named by the ``File: path`` line before it
(:func:`agentopt.evolve.diff.parse_diffs` records it). A hunk that names no file is applied
to the one file where its SEARCH text matches; when it matches none or several, the error
asks the model to name the file. Rewrites: each fenced block preceded by a ``File: path``
line replaces (the EVOLVE-BLOCKs of) that file; a single unnamed block is accepted when only
one file has EVOLVE-BLOCKs. Every file keeps the single-file rules: edits stay inside its
EVOLVE-BLOCKs when it has any. Files are never added or removed by a reply.
"""

from __future__ import annotations

from agentopt.blocks import BlockError, find_blocks
from agentopt.evolve.bundle import BundleError, pack, unpack
from agentopt.evolve.diff import (
    DiffApplyError,
    DiffParseError,
    MutationOutcome,
    SearchReplace,
    apply_diffs,
    extract_rewrite,
    file_header,
    find_code_fences,
    parse_diffs,
)

__all__ = ["apply_bundle_reply"]


def _resolve(name: str, files: dict[str, str]) -> str:
    """Map a path the model wrote to a bundle file: exact, without ``./``, or a unique basename."""
    clean = name.strip().strip("'\"").removeprefix("./")
    if clean in files:
        return clean
    by_base = [path for path in files if path.rsplit("/", 1)[-1] == clean.rsplit("/", 1)[-1]]
    if len(by_base) == 1:
        return by_base[0]
    raise DiffApplyError(f"the reply names file {name!r}, which is not part of the program (files: {', '.join(files)})")


def _fitting_files(files: dict[str, str], hunk: SearchReplace) -> list[str]:
    fits = []
    for path, text in files.items():
        try:
            apply_diffs(text, [hunk])
        except DiffApplyError:
            continue
        fits.append(path)
    return fits


def _apply_hunks(files: dict[str, str], hunks: list[SearchReplace]) -> list[str]:
    changed: list[str] = []
    for n, hunk in enumerate(hunks, start=1):
        target = _resolve(hunk.file, files) if hunk.file is not None else None
        if target is not None and hunk.search.strip() not in files[target]:
            # A header is sticky, so a hunk after it may really belong to another file the
            # model forgot to name; when exactly one file fits, that is where it goes.
            fits = _fitting_files(files, hunk)
            target = fits[0] if len(fits) == 1 else target
        if target is None:
            fits = _fitting_files(files, hunk)
            if len(fits) != 1:
                where = "no file" if not fits else f"{len(fits)} files ({', '.join(fits)})"
                raise DiffApplyError(
                    f"hunk {n} names no file and its SEARCH text fits {where}; put a line 'File: <path>' "
                    "before each SEARCH/REPLACE block"
                )
            target = fits[0]
        try:
            files[target] = apply_diffs(files[target], [hunk])
        except DiffApplyError as err:
            raise DiffApplyError(f"{target}: {str(err).replace('hunk 1', f'hunk {n}', 1)}") from None
        if target not in changed:
            changed.append(target)
    return changed


def _fence_file(reply_lines: list[str], fence_line: int) -> str | None:
    """The file named on the last non-blank line before a fence opener (1-based line)."""
    for line in reversed(reply_lines[: fence_line - 1]):
        if line.strip():
            named = file_header(line)
            if named is None and line.strip().strip("`*:").count(" ") == 0 and "." in line:
                named = line.strip().strip("`*:")  # a bare "`lib/helper.py`:" line
            return named
    return None


def _apply_rewrite(files: dict[str, str], reply: str) -> list[str]:
    fences = [f for f in find_code_fences(reply) if f.body.strip()]
    if not fences:
        raise DiffApplyError("no fenced code block in the reply")
    lines = reply.replace("\r\n", "\n").split("\n")
    named = [(f, _fence_file(lines, f.line)) for f in fences]
    if not any(name for _, name in named):
        evolvable = [p for p, text in files.items() if _has_blocks(text)]
        if len(fences) == 1 and len(evolvable) == 1:
            named = [(fences[0], evolvable[0])]
        else:
            raise DiffApplyError(
                "the program has several files: put a line 'File: <path>' before each fenced code block"
            )
    changed: list[str] = []
    for block, name in named:
        if name is None:
            continue
        target = _resolve(name, files)
        fenced = f"```{block.info}\n{block.body}```\n" if block.body.endswith("\n") else f"```\n{block.body}\n```\n"
        files[target] = extract_rewrite(fenced, files[target])
        changed.append(target)
    return changed


def _has_blocks(text: str) -> bool:
    try:
        return bool(find_blocks(text))
    except BlockError:
        return False


def apply_bundle_reply(bundle: str, reply: str, mode: str = "diff") -> tuple[MutationOutcome, list[str]]:
    """Apply ``reply`` to a bundle: ``(outcome, changed file paths)``; never raises for a bad reply."""
    if not reply or not reply.strip():
        return MutationOutcome(None, "empty reply", mode), []
    try:
        files = unpack(bundle)
    except BundleError as err:
        return MutationOutcome(None, str(err), mode), []
    has_hunk = any(line.lstrip().startswith("<<<<<") and "SEARCH" in line for line in reply.splitlines())
    kind = "diff" if has_hunk else "rewrite"
    try:
        changed = _apply_hunks(files, parse_diffs(reply)) if has_hunk else _apply_rewrite(files, reply)
        code = pack(files)
    except (DiffParseError, DiffApplyError, BlockError, BundleError) as err:
        return MutationOutcome(None, str(err), kind), []
    if code == bundle:
        return MutationOutcome(None, "the reply made no change to any file", kind), []
    return MutationOutcome(code, None, kind), changed
