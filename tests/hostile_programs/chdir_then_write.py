# expect: forbidden
import os

os.chdir('{CANARY}')
open('evil.txt', 'w').write('pwned')
