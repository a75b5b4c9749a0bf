# expect: ok
import os


def solution():
    return os.environ.get('OPENAI_API_KEY', 'absent')
