# expect: timeout
def solution():
    x = 0
    while True:
        x += 1
