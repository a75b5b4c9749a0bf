# expect: forbidden
with open('{CANARY}/keep.txt', 'a') as fh:
    fh.write('pwned')
