# expect: forbidden|error
import shutil

shutil.rmtree('{CANARY}')
