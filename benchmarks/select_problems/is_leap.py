"""is_leap(year) in the Gregorian calendar: 3 correct and 5 buggy implementations, 9
plausible tests of which 3 are wrong (they forget the century or the 400-year rule)."""

ENTRY = "is_leap"

REFERENCE = '''
def is_leap(year):
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
'''

SOLUTIONS = [
    REFERENCE,
    '''
def is_leap(year):
    if year % 400 == 0:
        return True
    if year % 100 == 0:
        return False
    return year % 4 == 0
''',
    '''
def is_leap(year):
    import calendar
    return calendar.isleap(year)
''',
    # bug: only the 4-year rule
    '''
def is_leap(year):
    return year % 4 == 0
''',
    '''
def is_leap(year):
    return not year % 4
''',
    # bug: forgets the 400-year exception
    '''
def is_leap(year):
    return year % 4 == 0 and year % 100 != 0
''',
    '''
def is_leap(year):
    if year % 100 == 0:
        return False
    return year % 4 == 0
''',
    # bug: inverted century rule
    '''
def is_leap(year):
    return year % 4 == 0 and (year % 100 == 0 or year % 400 != 0) and year % 100 != 0 or year % 400 == 100
''',
]

TESTS = [
    ((2024,), True), ((2023,), False), ((1996,), True), ((1900,), False), ((2000,), True),
    ((2100,), False), ((1900,), True), ((2000,), False), ((1800,), True),
]

HIDDEN_INPUTS = [(y,) for y in (1600, 1700, 1800, 1900, 1996, 2000, 2001, 2004, 2100, 2400, 2023)]
