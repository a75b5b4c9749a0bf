# expect: error
def f(n):
    return f(n + 1)

def solution():
    return f(0)
