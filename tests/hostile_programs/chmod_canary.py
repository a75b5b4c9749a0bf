# expect: forbidden
import os

os.chmod('{CANARY}/keep.txt', 0)
