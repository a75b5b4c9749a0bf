# expect: error
def solution():
    return 1 / 0
