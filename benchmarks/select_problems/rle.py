"""rle(text): run-length encoding "aaab" -> "a3b1": 3 correct and 5 buggy implementations,
9 plausible tests of which 3 are wrong (dropped last run, total counts instead of runs)."""

ENTRY = "rle"

REFERENCE = '''
def rle(text):
    out = []
    i = 0
    while i < len(text):
        j = i
        while j < len(text) and text[j] == text[i]:
            j += 1
        out.append(f"{text[i]}{j - i}")
        i = j
    return "".join(out)
'''

SOLUTIONS = [
    REFERENCE,
    '''
def rle(text):
    import itertools
    return "".join(f"{ch}{len(list(group))}" for ch, group in itertools.groupby(text))
''',
    '''
def rle(text):
    if not text:
        return ""
    parts, prev, count = [], text[0], 0
    for ch in text:
        if ch == prev:
            count += 1
        else:
            parts.append(prev + str(count))
            prev, count = ch, 1
    parts.append(prev + str(count))
    return "".join(parts)
''',
    # bug: drops the last run
    '''
def rle(text):
    if not text:
        return ""
    parts, prev, count = [], text[0], 0
    for ch in text:
        if ch == prev:
            count += 1
        else:
            parts.append(prev + str(count))
            prev, count = ch, 1
    return "".join(parts)
''',
    '''
def rle(text):
    out = ""
    count = 1
    for i in range(1, len(text)):
        if text[i] == text[i - 1]:
            count += 1
        else:
            out += text[i - 1] + str(count)
            count = 1
    return out
''',
    # bug: counts characters overall, not runs
    '''
def rle(text):
    from collections import Counter
    return "".join(f"{ch}{n}" for ch, n in Counter(text).items())
''',
    '''
def rle(text):
    seen = {}
    for ch in text:
        seen[ch] = seen.get(ch, 0) + 1
    return "".join(k + str(v) for k, v in seen.items())
''',
    # bug: crashes on the empty string
    '''
def rle(text):
    parts, prev, count = [], text[0], 0
    for ch in text:
        if ch == prev:
            count += 1
        else:
            parts.append(prev + str(count))
            prev, count = ch, 1
    parts.append(prev + str(count))
    return "".join(parts)
''',
]

TESTS = [
    (("aaab",), "a3b1"), (("abc",), "a1b1c1"), (("",), ""), (("zz",), "z2"), (("aabbaa",), "a2b2a2"),
    (("aaab",), "a3"), (("aabbaa",), "a4b2"), (("abca",), "a2b1c1"), (("x",), "x1"),
]

HIDDEN_INPUTS = [("aaab",), ("",), ("a",), ("abab",), ("aabbaa",), ("zzzzzz",), ("abcd",), ("aaabccddd",)]
