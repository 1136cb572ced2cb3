"""Guest-side stand-in for the parts of OpenEvolve that evaluators import.

OpenEvolve evaluators often do ``from openevolve.evaluation_result import EvaluationResult``.
agentopt runs evaluators in a sandbox where OpenEvolve is not installed (and must not be
needed), and the runner puts this ``evaluators/`` folder on ``sys.path``, so this tiny
package answers those imports. It is stdlib only and never imports agentopt: guest code
cannot assume the host package exists inside the sandbox.

Only the evaluator-facing surface is provided; ``import openevolve; openevolve.OpenEvolve``
(the controller) is deliberately absent — an evaluator has no use for it.
"""

from openevolve.evaluation_result import EvaluationResult

__version__ = "0.4.0+agentopt-shim"

__all__ = ["EvaluationResult", "__version__"]
