# expect: forbidden
import ctypes

ctypes.CDLL(None).kill(0, 9)
