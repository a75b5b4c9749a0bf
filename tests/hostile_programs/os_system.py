# expect: forbidden
import os

os.system('touch {CANARY}/pwned')
