"""Guest evaluator for a traced workflow evolved with ``agentopt evolve optimize.yaml``.

Unlike other evaluators this one needs agentopt inside the sandbox: the workflow is built
with ``agentopt.trace`` and scored with its ``backward``/render machinery. The local sandbox
uses the host's interpreter, where agentopt is installed; a docker image must have agentopt
installed too. The task-specific settings come from the manifest copied next to this file.
"""

from __future__ import annotations

import os

MANIFEST_NAME = "_agentopt_trace_target.json"


def evaluate(program_path: str) -> dict:
    """Score the Param assignment in ``program_path`` (see agentopt.targets.trace_guest)."""
    try:
        from agentopt.targets.trace_guest import evaluate_candidate
    except ImportError as exc:
        raise RuntimeError(
            f"agentopt is not importable in this sandbox ({exc}); evolving a traced workflow needs "
            "agentopt installed where the evaluator runs (for docker: in the image)"
        ) from None
    here = os.path.dirname(os.path.abspath(__file__))
    return evaluate_candidate(program_path, os.path.join(here, MANIFEST_NAME))
