# expect: ok
# answer: 3
def solution():
    with open('scratch.txt', 'w') as fh:
        fh.write('abc')
    return len(open('scratch.txt').read())
