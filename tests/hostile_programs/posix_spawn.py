# expect: forbidden
import os

os.posix_spawn('/bin/sh', ['sh', '-c', 'touch {CANARY}/pwned'], {})
