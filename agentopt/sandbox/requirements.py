"""Check that an evaluator's Python requirements are installed in the interpreter that runs it.

Why a subprocess: the evaluator runs in the *guest* interpreter (a venv, a container's
python, another version), so asking the host's ``importlib`` would answer the wrong question,
and importing packages in the host could run arbitrary code. The guest interpreter is asked
only for distribution versions (``importlib.metadata``, stdlib) and its marker environment;
the host does the parsing and version comparison (with ``packaging`` when installed, else
a small PEP 440-ish fallback that covers the specifiers people actually write).

A missing package found up front is one clear line ("install with: pip install ...")
instead of an ``ImportError`` in every candidate's evaluation, which would look like every
candidate failing.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentopt.errors import SandboxError

try:  # packaging is almost always present (pip, setuptools depend on it) but not guaranteed.
    from packaging.markers import InvalidMarker, Marker
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version
except ImportError:  # pragma: no cover - exercised only where packaging is absent
    Requirement = None  # type: ignore[assignment,misc]

_NAME_RE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)$")
_SPEC_RE = re.compile(r"^\s*(===|==|!=|~=|>=|<=|>|<)\s*([^\s,;]+)\s*$")

# Runs inside the target interpreter: stdlib only, prints one JSON object.
_PROBE = r"""
import json, os, platform, sys
import importlib.metadata as md
names = json.loads(sys.argv[1])
found = {}
for name in names:
    try:
        found[name] = md.version(name)
    except Exception:
        found[name] = None
impl = sys.implementation
iv = impl.version
impl_version = "%d.%d.%d" % (iv.major, iv.minor, iv.micro)
if iv.releaselevel != "final":
    impl_version += iv.releaselevel[0] + str(iv.serial)
env = {
    "implementation_name": impl.name,
    "implementation_version": impl_version,
    "os_name": os.name,
    "platform_machine": platform.machine(),
    "platform_release": platform.release(),
    "platform_system": platform.system(),
    "platform_version": platform.version(),
    "python_full_version": platform.python_version(),
    "platform_python_implementation": platform.python_implementation(),
    "python_version": ".".join(platform.python_version_tuple()[:2]),
    "sys_platform": sys.platform,
}
print(json.dumps({"versions": found, "env": env}))
"""


@dataclass
class ParsedRequirement:
    """The parts of a requirement string that decide whether it is satisfied."""

    text: str  # as written, for messages and the pip command
    name: str  # canonical (PEP 503) distribution name
    extras: list[str] = field(default_factory=list)
    specifier: str = ""  # e.g. ">=0.58,<1"
    marker: str = ""  # e.g. 'python_version < "3.12"'


def canonical_name(name: str) -> str:
    """PEP 503 normalisation, so ``Foo_Bar`` and ``foo-bar`` are the same distribution."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_requirement(text: str) -> ParsedRequirement:
    """Parse one requirement string; raise :class:`SandboxError` (one line) if it is not one."""
    text = text.strip()
    if Requirement is not None:
        try:
            req = Requirement(text)
        except InvalidRequirement as err:
            raise SandboxError(f"invalid requirement {text!r}: {str(err).splitlines()[0]}") from None
        return ParsedRequirement(
            text=text,
            name=canonical_name(req.name),
            extras=sorted(req.extras),
            specifier=str(req.specifier),
            marker=str(req.marker) if req.marker is not None else "",
        )
    return _parse_requirement_fallback(text)


def _parse_requirement_fallback(text: str) -> ParsedRequirement:
    body, _, marker = text.partition(";")
    body = body.split("@", 1)[0]  # "name @ url": only the name matters for "is it installed"
    m = _NAME_RE.match(body)
    if not m:
        raise SandboxError(f"invalid requirement {text!r}")
    name, extras, rest = m.group(1), m.group(2) or "", m.group(3).strip()
    if rest.startswith("(") and rest.endswith(")"):
        rest = rest[1:-1]
    specs = [s.strip() for s in rest.split(",") if s.strip()]
    for spec in specs:
        if not _SPEC_RE.match(spec):
            raise SandboxError(f"invalid requirement {text!r}: bad version specifier {spec!r}")
    return ParsedRequirement(
        text=text,
        name=canonical_name(name),
        extras=sorted(e.strip() for e in extras.strip("[]").split(",") if e.strip()),
        specifier=",".join(specs),
        marker=marker.strip(),
    )


def read_requirements_file(path: Path) -> list[str]:
    """Requirement lines of a pip ``requirements.txt`` (comments, blanks and options dropped).

    ``-r other.txt`` includes are followed (relative to the including file); other pip
    options (``--index-url``, ``-e``, hashes) do not name something this check can verify.
    """
    return _read_requirements(path, seen=set())


def _read_requirements(path: Path, seen: set[Path]) -> list[str]:
    path = path.resolve()
    if path in seen:
        return []
    seen.add(path)
    out: list[str] = []
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if not line:
            continue
        include = re.match(r"^(-r|--requirement)[\s=]+(\S+)$", line)
        if include:
            out.extend(_read_requirements(path.parent / include.group(2), seen))
            continue
        if line.startswith("-"):
            continue
        line = line.split(" --hash", 1)[0].strip()
        out.append(line)
    return out


def _version_tuple(v: str) -> tuple[int, ...]:
    parts: list[int] = []
    for piece in v.split("+", 1)[0].split("."):
        m = re.match(r"\d+", piece)
        if not m:
            break
        parts.append(int(m.group()))
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def _satisfies_fallback(version: str, specifier: str) -> bool:
    """Release-number comparison for when ``packaging`` is absent (pre-release tags ignored)."""
    have = _version_tuple(version)
    for spec in filter(None, (s.strip() for s in specifier.split(","))):
        m = _SPEC_RE.match(spec)
        if not m:
            return False
        op, want_text = m.groups()
        if op == "===":
            if version != want_text:
                return False
            continue
        if want_text.endswith(".*") and op in ("==", "!="):
            prefix = _version_tuple(want_text[:-2])
            same = have[: len(prefix)] == prefix or (have + (0,) * len(prefix))[: len(prefix)] == prefix
            if same != (op == "=="):
                return False
            continue
        want = _version_tuple(want_text)
        ok = {
            "==": have == want,
            "!=": have != want,
            ">=": have >= want,
            "<=": have <= want,
            ">": have > want,
            "<": have < want,
            "~=": have >= want and have[: max(len(want) - 1, 1)] == want[: max(len(want) - 1, 1)],
        }[op]
        if not ok:
            return False
    return True


def _satisfies(version: str, specifier: str) -> bool:
    if not specifier:
        return True
    if Requirement is not None:
        try:
            return SpecifierSet(specifier).contains(Version(version), prereleases=True)
        except InvalidVersion:
            return _satisfies_fallback(version, specifier)
    return _satisfies_fallback(version, specifier)


def _marker_applies(marker: str, env: dict[str, str]) -> bool:
    if not marker:
        return True
    if Requirement is not None:
        try:
            return bool(Marker(marker).evaluate(env))
        except InvalidMarker:
            return True  # cannot tell: check the package rather than silently skipping it
    return True  # no marker evaluator without packaging: checking too much is the safe side


def _probe(names: list[str], python: str) -> dict[str, Any]:
    try:
        proc = subprocess.run(
            [python, "-I", "-c", _PROBE, json.dumps(names)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise SandboxError(f"cannot run {python} to check evaluator requirements: {err}") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise SandboxError(f"cannot check evaluator requirements with {python}: {last}")
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise SandboxError(f"cannot check evaluator requirements with {python}: unreadable answer") from None


def missing_requirements(requirements: list[str], python: str = sys.executable) -> list[str]:
    """Return the requirement strings (as written) that ``python`` does not satisfy.

    A requirement is missing when its distribution is not installed or its installed version
    is outside the specifier. Requirements whose environment marker does not apply to that
    interpreter are skipped. Extras are not verified (pip does not record them).
    """
    parsed = [parse_requirement(r) for r in requirements if r.strip()]
    if not parsed:
        return []
    answer = _probe(sorted({p.name for p in parsed}), python)
    versions: dict[str, str | None] = answer.get("versions", {})
    env: dict[str, str] = answer.get("env", {})
    missing: list[str] = []
    for req in parsed:
        if not _marker_applies(req.marker, env):
            continue
        version = versions.get(req.name)
        if version is None or not _satisfies(version, req.specifier):
            missing.append(req.text)
    return missing


def format_missing(missing: list[str], requirements_file: Path | str | None = None) -> str:
    """One line naming what is missing and the exact pip command that fixes it."""
    shown = ", ".join(missing)
    command = " ".join(shlex.quote(m) for m in missing)
    where = f" (listed in {requirements_file})" if requirements_file else ""
    return f"missing packages for evaluator: {shown} — install with: pip install {command}{where}"
