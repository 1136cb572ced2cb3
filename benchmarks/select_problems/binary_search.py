"""binary_search(xs, target) -> index or -1 on a sorted list: 3 correct and 5 buggy
implementations, 9 plausible tests of which 2 are wrong."""

ENTRY = "binary_search"

REFERENCE = '''
def binary_search(xs, target):
    lo, hi = 0, len(xs) - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        if xs[mid] == target:
            return mid
        if xs[mid] < target:
            lo = mid + 1
        else:
            hi = mid - 1
    return -1
'''

SOLUTIONS = [
    REFERENCE,
    '''
def binary_search(xs, target):
    import bisect
    i = bisect.bisect_left(xs, target)
    return i if i < len(xs) and xs[i] == target else -1
''',
    '''
def binary_search(xs, target):
    lo, hi = 0, len(xs)
    while lo < hi:
        mid = (lo + hi) // 2
        if xs[mid] < target:
            lo = mid + 1
        else:
            hi = mid
    return lo if lo < len(xs) and xs[lo] == target else -1
''',
    # bug: lo < hi with inclusive hi misses the last candidate
    '''
def binary_search(xs, target):
    lo, hi = 0, len(xs) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if xs[mid] == target:
            return mid
        if xs[mid] < target:
            lo = mid + 1
        else:
            hi = mid - 1
    return -1
''',
    '''
def binary_search(xs, target):
    low, high = 0, len(xs) - 1
    while low < high:
        m = (low + high) // 2
        if xs[m] < target:
            low = m + 1
        elif xs[m] > target:
            high = m - 1
        else:
            return m
    return -1
''',
    # bug: returns the insertion point instead of -1
    '''
def binary_search(xs, target):
    import bisect
    return bisect.bisect_left(xs, target)
''',
    # bug: hi = mid with inclusive hi loops forever on some inputs (caught by the time limit)
    '''
def binary_search(xs, target):
    lo, hi = 0, len(xs) - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        if xs[mid] == target:
            return mid
        if xs[mid] < target:
            lo = mid + 1
        else:
            hi = mid
    return -1
''',
    # bug: linear scan that stops at the first larger element but returns the wrong index
    '''
def binary_search(xs, target):
    for i, x in enumerate(xs):
        if x >= target:
            return i if x == target else -1
    return len(xs)
''',
]

TESTS = [
    (([1, 3, 5, 7], 5), 2), (([1, 3, 5, 7], 4), -1), (([], 1), -1), (([2], 2), 0), (([1, 3, 5, 7], 7), 3),
    (([1, 3, 5, 7], 1), 0), (([1, 3, 5, 7], 8), 4), (([1, 3, 5, 7], 4), 2), (([10, 20], 20), 1),
]

HIDDEN_INPUTS = [([1, 3, 5, 7], 5), ([1, 3, 5, 7], 4), ([], 1), ([2], 2), ([2], 3), ([1, 3, 5, 7], 7),
                 ([1, 3, 5, 7], 0), ([1, 3, 5, 7], 9), ([1, 2, 3, 4, 5, 6], 6), ([10, 20], 15)]
