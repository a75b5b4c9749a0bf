# expect: forbidden
for i in range(10000):
    open(f'f{i}.txt', 'w').close()
