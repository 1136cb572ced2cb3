"""median of a list of numbers: 3 correct and 6 buggy implementations, 10 plausible tests of
which 3 are wrong (upper-middle for even lengths, unsorted middle)."""

ENTRY = "median"

REFERENCE = '''
def median(xs):
    s = sorted(xs)
    n = len(s)
    mid = n // 2
    return s[mid] if n % 2 else (s[mid - 1] + s[mid]) / 2
'''

SOLUTIONS = [
    REFERENCE,
    '''
def median(xs):
    import statistics
    return statistics.median(xs)
''',
    '''
def median(xs):
    ys = sorted(xs)
    while len(ys) > 2:
        ys = ys[1:-1]
    return sum(ys) / len(ys) if len(ys) == 2 else ys[0]
''',
    # bug: even length returns the upper middle
    '''
def median(xs):
    s = sorted(xs)
    return s[len(s) // 2]
''',
    '''
def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]
''',
    # bug: integer division of the two middles
    '''
def median(xs):
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) // 2
''',
    # bug: forgets to sort
    '''
def median(xs):
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2
''',
    '''
def median(xs):
    mid = len(xs) // 2
    if len(xs) % 2:
        return xs[mid]
    return (xs[mid - 1] + xs[mid]) / 2
''',
    # bug: even length returns the lower middle
    '''
def median(xs):
    s = sorted(xs)
    return s[(len(s) - 1) // 2]
''',
]

TESTS = [
    (([3, 1, 2],), 2),
    (([1, 2, 3, 4],), 2.5),
    (([7],), 7),
    (([5, 1, 4, 2],), 3.0),
    (([1, 1, 1, 1],), 1),
    (([10, 2, 38, 23, 38],), 23),
    (([1, 2],), 1.5),
    (([1, 2, 3, 4],), 3),
    (([9, 1, 5, 3],), 4),
    (([3, 1, 2],), 1),
]

HIDDEN_INPUTS = [([3, 1, 2],), ([1, 2, 3, 4],), ([5],), ([4, 1, 3, 2],), ([1, 3],), ([-5, 0, 5, 10, 20],),
                 ([2, 2, 3, 9],), ([1, 4],)]
