"""Shared pytest fixtures. Keep each fixture small; other modules append their own below."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

try:  # `python -m pytest` (repo root on sys.path) or a tests package
    from tests.llm_server import ScriptedOpenAIServer
except ImportError:  # plain `pytest` with rootdir-relative imports: tests/ itself is on sys.path
    from llm_server import ScriptedOpenAIServer  # type: ignore[no-redef]


@pytest.fixture
def scripted_llm() -> Iterator[Callable[..., ScriptedOpenAIServer]]:
    """Factory ``make(replies, **kw) -> ScriptedOpenAIServer`` (already started); all stopped at teardown."""
    servers: list[ScriptedOpenAIServer] = []

    def make(replies: Any, **kw: Any) -> ScriptedOpenAIServer:
        server = ScriptedOpenAIServer(replies, **kw).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
