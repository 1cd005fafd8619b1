#!/usr/bin/env python3
"""faultpeer.py -- a TCP peer that misbehaves in one chosen way, for it_faults2.sh.

usage: faultpeer.py MODE ADDR_FILE [ARG]
Listens on 127.0.0.1:0, writes HOST:PORT to ADDR_FILE once listening, and serves until killed.
Each accepted connection gets MODE; per-connection facts go to stdout, one line each, flushed:
  rst_accept       accept, then close with SO_LINGER {1, 0}: an RST, nothing read or written
  rst_after N      echo what arrives; once N bytes have come, close with an RST
  halfclose MS     echo for MS ms, then shutdown(SHUT_WR) and keep reading; prints "eof" when
                   our peer closes its side too (the half-open connection was not left hanging)
  halfclose_owing  echo the first read, then shutdown(SHUT_WR) at the second without echoing it
  http_halfclose   read one request head, answer it (keep-alive), then shutdown(SHUT_WR)
  listen0          listen(fd, 0) and never accept
  garbage          write 4096 bytes nobody asked for at once, then read and discard
  noread           accept and never read (the send queue fills up)
  close_unread N   read N bytes, then close with data unread (the kernel sends an RST)
"""
import os
import socket
import struct
import sys
import threading
import time


def rst(c):
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()


SAY_LOCK = threading.Lock()


def say(*a):
    # One write per line, under a lock: print() writes the text and the newline apart, so two
    # threads' "eof" could come out as "eofeof" and be counted once.
    with SAY_LOCK:
        sys.stdout.write(" ".join(str(x) for x in a) + "\n")
        sys.stdout.flush()


def serve_conn(c, mode, arg):
    try:
        if mode == "rst_accept":
            rst(c)
        elif mode == "rst_after":
            got = 0
            while got < arg:
                b = c.recv(65536)
                if not b:
                    return
                got += len(b)
                c.sendall(b)
            say("rst after", got)
            rst(c)
        elif mode == "halfclose":
            c.settimeout(arg / 1000.0)
            end = time.monotonic() + arg / 1000.0
            try:
                while time.monotonic() < end:
                    b = c.recv(65536)
                    if not b:
                        break
                    c.sendall(b)
            except socket.timeout:
                pass
            c.shutdown(socket.SHUT_WR)
            say("shut_wr")
            c.settimeout(10)
            while c.recv(65536):
                pass
            say("eof")
            c.close()
        elif mode == "halfclose_owing":
            c.settimeout(10)
            b = c.recv(65536)
            if b:
                c.sendall(b)
                b = c.recv(65536)
            c.shutdown(socket.SHUT_WR)
            say("shut_wr owing")
            while c.recv(65536):
                pass
            say("eof")
            c.close()
        elif mode == "http_halfclose":
            c.settimeout(10)
            buf = b""
            while b"\r\n\r\n" not in buf:
                b = c.recv(65536)
                if not b:
                    return
                buf += b
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            c.shutdown(socket.SHUT_WR)
            say("shut_wr")
            while c.recv(65536):
                pass
            say("eof")
            c.close()
        elif mode == "garbage":
            c.sendall(bytes((i * 7 + 13) % 256 for i in range(4096)))
            c.settimeout(10)
            while c.recv(65536):
                pass
            c.close()
        elif mode == "noread":
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            time.sleep(3600)
        elif mode == "close_unread":
            got = 0
            while got < arg:
                b = c.recv(min(65536, arg - got))
                if not b:
                    break
                got += len(b)
            say("closing with data unread after", got)
            c.close()
    except OSError as e:
        say("error", e)


def main():
    mode, addr_file = sys.argv[1], sys.argv[2]
    arg = int(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[3] else 0
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if mode == "noread":
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # inherited by accepted ones
    s.bind(("127.0.0.1", 0))
    s.listen(0 if mode == "listen0" else 1024)
    tmp = addr_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%s:%d" % s.getsockname())
    os.rename(tmp, addr_file)
    if mode == "listen0":
        time.sleep(3600)
        return
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve_conn, args=(c, mode, arg), daemon=True).start()


if __name__ == "__main__":
    main()
