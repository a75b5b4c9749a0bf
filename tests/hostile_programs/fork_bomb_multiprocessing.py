# expect: forbidden
import multiprocessing


def f():
    while True:
        pass

for _ in range(100):
    multiprocessing.Process(target=f).start()
