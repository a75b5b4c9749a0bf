# expect: memory
def solution():
    hog = []
    while True:
        hog.append(bytearray(10**7))
