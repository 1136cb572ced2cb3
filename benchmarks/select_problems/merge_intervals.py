"""merge_intervals (the tasks/code_debug function): 4 correct and 7 buggy implementations,
12 plausible tests of which 4 are wrong (they encode the same misconceptions as the bugs)."""

ENTRY = "merge_intervals"

REFERENCE = '''
def merge_intervals(intervals):
    out = []
    for s, e in sorted(intervals):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return out
'''

SOLUTIONS = [
    REFERENCE,
    '''
def merge_intervals(intervals):
    if not intervals:
        return []
    ivs = sorted([list(iv) for iv in intervals], key=lambda iv: iv[0])
    merged = [ivs[0]]
    for start, end in ivs[1:]:
        last = merged[-1]
        if start <= last[1]:
            last[1] = max(last[1], end)
        else:
            merged.append([start, end])
    return merged
''',
    '''
def merge_intervals(intervals):
    result = []
    for iv in sorted(intervals):
        if not result or result[-1][1] < iv[0]:
            result.append(list(iv))
        elif result[-1][1] < iv[1]:
            result[-1][1] = iv[1]
    return result
''',
    '''
def merge_intervals(intervals):
    ivs = sorted(map(list, intervals))
    i = 0
    while i + 1 < len(ivs):
        if ivs[i + 1][0] <= ivs[i][1]:
            ivs[i][1] = max(ivs[i][1], ivs[i + 1][1])
            del ivs[i + 1]
        else:
            i += 1
    return ivs
''',
    # bug: touching intervals are not merged (strict <)
    '''
def merge_intervals(intervals):
    out = []
    for s, e in sorted(intervals):
        if out and s < out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return out
''',
    '''
def merge_intervals(intervals):
    merged = []
    for start, end in sorted(intervals):
        if merged and start < merged[-1][1]:
            merged[-1][1] = max(end, merged[-1][1])
        else:
            merged.append([start, end])
    return merged
''',
    # bug: a contained interval shrinks the merged one (the code_debug original, two bugs)
    '''
def merge_intervals(intervals):
    intervals = sorted(intervals)
    merged = []
    for start, end in intervals:
        if merged and start < merged[-1][1]:
            merged[-1][1] = end
        else:
            merged.append([start, end])
    return merged
''',
    '''
def merge_intervals(intervals):
    out = []
    for s, e in sorted(intervals):
        if out and s <= out[-1][1]:
            out[-1][1] = e
        else:
            out.append([s, e])
    return out
''',
    '''
def merge_intervals(intervals):
    res = []
    for s, e in sorted(intervals):
        if res and s <= res[-1][1]:
            res[-1] = [res[-1][0], e]
        else:
            res.append([s, e])
    return res
''',
    # bug: forgets to sort
    '''
def merge_intervals(intervals):
    out = []
    for s, e in intervals:
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return out
''',
    # bug: sorts by end
    '''
def merge_intervals(intervals):
    out = []
    for s, e in sorted(intervals, key=lambda iv: iv[1]):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return out
''',
]

# (args, expected). Wrong ones: touching kept apart (x2), contained interval shrinks, unsorted input kept.
TESTS = [
    (([[1, 3], [2, 6], [8, 10]],), [[1, 6], [8, 10]]),
    (([[1, 4], [4, 5]],), [[1, 5]]),
    (([[1, 10], [2, 3]],), [[1, 10]]),
    (([],), []),
    (([[5, 7]],), [[5, 7]]),
    (([[8, 10], [1, 3]],), [[1, 3], [8, 10]]),
    (([[1, 2], [3, 4]],), [[1, 2], [3, 4]]),
    (([[6, 8], [1, 9], [2, 4]],), [[1, 9]]),
    (([[1, 4], [4, 5]],), [[1, 4], [4, 5]]),
    (([[0, 2], [2, 3], [5, 6]],), [[0, 2], [2, 3], [5, 6]]),
    (([[1, 10], [2, 3]],), [[1, 3]]),
    (([[3, 5], [1, 2]],), [[3, 5], [1, 2]]),
]

HIDDEN_INPUTS = [
    ([[1, 3], [2, 6], [8, 10], [15, 18]],), ([[1, 4], [4, 5]],), ([[1, 10], [2, 3], [4, 5]],), ([],),
    ([[2, 3], [1, 2]],), ([[5, 6], [1, 2], [3, 4]],), ([[1, 5], [2, 3], [4, 8], [9, 9]],), ([[0, 0]],),
    ([[7, 9], [1, 10]],), ([[1, 2], [2, 3], [3, 4]],),
]
