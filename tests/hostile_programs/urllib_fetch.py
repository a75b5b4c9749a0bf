# expect: forbidden|error
import urllib.request

urllib.request.urlopen('http://example.com', timeout=1).read()
