"""Deprecated: the OpenEvolve translation moved to :mod:`agentopt.targets.openevolve` (gone in agentopt 0.2)."""

import warnings

from agentopt.targets.openevolve import (
    looks_like_openevolve,
    run_import_cli,
    task_from_openevolve,
    write_task_yaml,
)

warnings.warn(
    "agentopt.compat moved to agentopt.targets.openevolve; the old import path goes away in agentopt 0.2",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = ["looks_like_openevolve", "run_import_cli", "task_from_openevolve", "write_task_yaml"]
