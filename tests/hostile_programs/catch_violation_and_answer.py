# expect: forbidden
import os


def solution():
    try:
        os.fork()
    except BaseException:
        pass
    return 42
