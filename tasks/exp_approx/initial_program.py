"""exp(x) on the reduced range [-ln2/2, ln2/2] with few multiply/add operations.

Only the code between the EVOLVE-BLOCK markers is evolved. ``exp_approx`` may use only
its argument, local variables, numeric constants and the operators + - * (no calls,
loops, branches, division or powers); the evaluator checks this statically and counts
the operations (at most 10 in exp_approx; exp_approx_pareto allows 16 and trades accuracy
against the count). Start: the degree-4 Taylor polynomial in Horner form (8 operations).
"""


# EVOLVE-BLOCK-START
def exp_approx(x):
    p = 0.041666666666666664  # 1/24
    p = p * x + 0.16666666666666666  # 1/6
    p = p * x + 0.5
    p = p * x + 1.0
    p = p * x + 1.0
    return p
# EVOLVE-BLOCK-END


def exp_approx_batch(xs):
    """Evaluate the approximation on a whole grid in one call (one process round trip)."""
    return [exp_approx(float(x)) for x in xs]
