# expect: forbidden
from pathlib import Path

Path('{CANARY}/new.txt').write_text('pwned')
