"""Sandbox backends: candidates never run in the optimizer's process.

:func:`make_sandbox` builds the backend a task's ``sandbox.kind`` names (local process,
docker, ray); every backend runs the same guest runner and speaks the same framed protocol.
"""

from agentopt.sandbox.base import JobResult, Sandbox, SandboxJob
from agentopt.sandbox.factory import make_sandbox

__all__ = ["JobResult", "Sandbox", "SandboxJob", "make_sandbox"]
