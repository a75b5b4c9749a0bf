# expect: error|forbidden
import threading


def spin():
    while True:
        pass

for _ in range(50):
    threading.Thread(target=spin).start()
