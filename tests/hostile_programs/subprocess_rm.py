# expect: forbidden
import subprocess

subprocess.run('rm -rf {CANARY}', shell=True)
