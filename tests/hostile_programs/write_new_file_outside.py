# expect: forbidden
with open('{CANARY}/new.txt', 'w') as fh:
    fh.write('pwned')
