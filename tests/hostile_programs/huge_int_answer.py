# expect: ok
def solution():
    return 10**100000
