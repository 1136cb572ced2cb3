"""agentopt: optimize AI systems (prompts, agent code, hyper-parameters, kernels) with LLMs.

Heavy modules (litellm, the evolution engine) are imported lazily so that
``import agentopt`` and ``agentopt --help`` stay instant.
"""

from __future__ import annotations

import os

# litellm fetches a remote price map at import time unless told not to; with no internet
# that import takes ~9 s. Users can still override this by setting the variable themselves.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

__version__ = "0.1.0"

__all__ = ["__version__"]
