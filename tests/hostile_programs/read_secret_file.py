# expect: forbidden
def solution():
    return open('/etc/shadow').read()
