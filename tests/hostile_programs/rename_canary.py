# expect: forbidden
import os

os.rename('{CANARY}/keep.txt', '{CANARY}/moved.txt')
