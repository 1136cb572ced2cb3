"""``Module``: group Params like ``torch.nn.Module`` and save/load them as reviewable files.

Discovery walks instance attributes (Params, sub-Modules, lists/tuples/dicts of them, traced
functions with code) and trainable ``@trace`` methods of the class, so users only assign
attributes. ``save`` writes one text file per text/code Param and one ``params.yaml`` for
numbers and choices, so an optimized prompt is a normal diff in code review.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from agentopt.trace.errors import InvalidValue, ModuleStateError
from agentopt.trace.nodes import Param
from agentopt.trace.recorder import TracedFunction

MANIFEST = "params.yaml"
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def _walk(value: Any, prefix: str, seen: set[int]) -> Iterator[tuple[str, Param]]:
    if isinstance(value, Param):
        if id(value) not in seen:
            seen.add(id(value))
            yield prefix, value
    elif isinstance(value, Module):
        yield from value._named(prefix, seen)
    elif isinstance(value, TracedFunction):
        if value.code is not None:
            yield from _walk(value.code, prefix, seen)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _walk(item, f"{prefix}.{i}", seen)
    elif isinstance(value, dict):
        for k, item in value.items():
            yield from _walk(item, f"{prefix}.{k}", seen)


class Module:
    """Base class for trainable workflows: assign Params as attributes, get them back by name."""

    def __setattr__(self, key: str, value: Any) -> None:
        # A Param created without a name takes its attribute's name (shown in graphs and prompts).
        if isinstance(value, Param) and value.auto_name and not key.startswith("_"):
            value.name = key
            value.auto_name = False
        object.__setattr__(self, key, value)

    def _named(self, prefix: str, seen: set[int]) -> Iterator[tuple[str, Param]]:
        dot = f"{prefix}." if prefix else ""
        for key, value in vars(self).items():
            if not key.startswith("_"):
                yield from _walk(value, f"{dot}{key}", seen)
        for klass in type(self).__mro__:
            for key, value in vars(klass).items():
                if isinstance(value, TracedFunction) and value.code is not None:
                    yield from _walk(value.code, f"{dot}{key}", seen)

    def named_parameters(self) -> list[tuple[str, Param]]:
        """``(dotted.attribute.path, Param)`` pairs, each Param once, in discovery order."""
        return list(self._named("", set()))

    def parameters(self) -> list[Param]:
        return [p for _, p in self.named_parameters()]

    def state_dict(self) -> dict[str, Any]:
        """Current values by name (a plain dict: copy it to remember a good state)."""
        return {name: p._value for name, p in self.named_parameters()}

    def load_state_dict(self, state: dict[str, Any], *, strict: bool = True) -> None:
        """Assign values by name; each is validated. ``strict`` rejects missing/unknown names."""
        params = dict(self.named_parameters())
        unknown = sorted(set(state) - set(params))
        missing = sorted(set(params) - set(state))
        if strict and (unknown or missing):
            raise ModuleStateError(f"state does not match the module: unknown {unknown}, missing {missing}")
        for name, value in state.items():
            if name in params:
                params[name].set(value)

    def save(self, directory: str | Path) -> Path:
        """Write every Param under ``directory``; return the manifest path."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        manifest: dict[str, Any] = {"values": {}, "files": {}}
        used_files: set[str] = set()
        for name, p in self.named_parameters():
            if p.param_kind in ("text", "code"):
                fname = _file_name(name, ".py" if p.param_kind == "code" else ".txt", used_files)
                (out / fname).write_text(p._value, encoding="utf-8")
                manifest["files"][name] = fname
            else:
                manifest["values"][name] = p._value
        path = out / MANIFEST
        header = "# agentopt Module state: numbers/choices here, text and code Params in the listed files.\n"
        path.write_text(header + yaml.safe_dump(manifest, sort_keys=False, allow_unicode=True), encoding="utf-8")
        return path

    def load(self, directory: str | Path, *, strict: bool = True) -> None:
        """Read a directory written by :meth:`save`; every value is validated before use."""
        src = Path(directory)
        path = src / MANIFEST
        if not path.is_file():
            raise ModuleStateError(f"{path}: not found (expected a directory written by Module.save)")
        try:
            manifest = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as err:
            raise ModuleStateError(f"{path}: invalid YAML: {str(err).splitlines()[0]}") from None
        if not isinstance(manifest, dict):
            raise ModuleStateError(f"{path}: expected a mapping with 'values' and 'files'")
        state: dict[str, Any] = dict(manifest.get("values") or {})
        for name, fname in (manifest.get("files") or {}).items():
            fpath = src / str(fname)
            if fpath.resolve().parent != src.resolve() or not fpath.is_file():
                raise ModuleStateError(f"{path}: file for '{name}' not found or outside the directory: {fname}")
            state[name] = fpath.read_text(encoding="utf-8")
        try:
            self.load_state_dict(state, strict=strict)
        except InvalidValue as err:
            raise ModuleStateError(f"{path}: {err}") from None


def _file_name(name: str, suffix: str, used: set[str]) -> str:
    base = _SAFE.sub("_", name).strip("._") or "param"
    candidate = base + suffix
    k = 1
    while candidate in used:
        candidate = f"{base}_{k}{suffix}"
        k += 1
    used.add(candidate)
    return candidate
