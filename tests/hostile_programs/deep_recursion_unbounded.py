# expect: crash|timeout|memory|error
import sys

sys.setrecursionlimit(10**9)

def f(n):
    return f(n + 1) + 1

def solution():
    return f(0)
