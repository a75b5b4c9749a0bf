# expect: memory
def solution():
    return len(bytearray(10**11))
