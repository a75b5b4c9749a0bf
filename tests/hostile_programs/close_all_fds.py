# expect: error
import os

for fd in range(256):
    try:
        os.close(fd)
    except OSError:
        pass

def solution():
    return 1
