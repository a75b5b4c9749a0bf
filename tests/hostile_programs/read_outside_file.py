# expect: forbidden
def solution():
    return open('{CANARY}/keep.txt').read()
