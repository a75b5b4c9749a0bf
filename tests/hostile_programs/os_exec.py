# expect: forbidden
import os

os.execv('/bin/sh', ['sh', '-c', 'touch {CANARY}/pwned'])
