# expect: memory
def solution():
    s = 'x' * (10**10)
    return len(s)
