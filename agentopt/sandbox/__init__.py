"""Sandbox backends: candidates never run in the optimizer's process."""

from agentopt.sandbox.base import JobResult, Sandbox, SandboxJob

__all__ = ["JobResult", "Sandbox", "SandboxJob"]
