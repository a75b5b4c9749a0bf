# expect: forbidden
import os

fd = os.open('{CANARY}/keep.txt', os.O_WRONLY | os.O_TRUNC)
