# expect: forbidden
import socket

socket.gethostbyname('example.com')
