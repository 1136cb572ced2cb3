"""Deprecated: moved to :mod:`agentopt.targets.openevolve` (this path goes away in agentopt 0.2)."""

import agentopt.targets.openevolve as _moved
from agentopt._deprecated import alias_moved_module

alias_moved_module(__name__, _moved)
