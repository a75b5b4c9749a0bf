# expect: forbidden
import os

os.remove('{CANARY}/keep.txt')
