# expect: timeout
def solution():
    return sum(range(10**13))
