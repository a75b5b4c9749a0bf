# expect: output_limit
with open('big.bin', 'wb') as fh:
    while True:
        fh.write(b'z' * 10**6)
