# expect: forbidden
import os

os.symlink('{CANARY}/keep.txt', 'link')
open('link', 'w').write('pwned')
