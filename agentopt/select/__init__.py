"""Select code among plausible solutions with plausible tests (B4 and the usual baselines).

Input is a solutions x tests pass matrix (bool); no execution happens here, so this package
imports only numpy and the ground floor and can be used from anywhere.

>>> from agentopt.select import select
>>> select([[1, 1, 0], [1, 1, 0], [0, 0, 1]], "b4").index
0
"""

from agentopt.select.b4 import B4Prior, BetaPrior
from agentopt.select.matrix import SelectionError, as_pass_matrix, consensus_sets
from agentopt.select.strategies import STRATEGIES, Selection, expected_accuracy, select

__all__ = [
    "STRATEGIES",
    "B4Prior",
    "BetaPrior",
    "Selection",
    "SelectionError",
    "as_pass_matrix",
    "consensus_sets",
    "expected_accuracy",
    "select",
]
