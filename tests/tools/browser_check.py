#!/usr/bin/env python3
"""browser_check.py -- drives headless chromium over the DevTools protocol (a small stdlib
WebSocket client, no third-party packages) to check zlbench's live dashboard and HTML report.

  browser_check.py dashboard URL --shot OUT.png [--token T] [--stop]
  browser_check.py report FILE.html --shot OUT.png [--min-charts N]

Fails (exit 1, a line saying why) on: a JavaScript exception, a console error or warning, a
browser log error other than the expected answers of optional endpoints, any request leaving
the page's origin, numbers on the page that no /stats document of the last refresh shows,
charts without data points. Prints what it compared."""
import argparse
import base64
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request


def die(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


class WebSocket:
    """RFC 6455 client, text frames only: enough for the DevTools protocol."""

    def __init__(self, url):
        u = urllib.parse.urlparse(url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {u.path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\n"
                           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise EOFError("websocket handshake")
            buf += chunk
        head, self.buf = buf.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise RuntimeError("websocket handshake refused: %r" % head[:100])

    def send(self, text):
        data, mask = text.encode(), os.urandom(4)
        n = len(data)
        hdr = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else
                               bytes([0x80 | 126]) + struct.pack(">H", n) if n < 65536 else
                               bytes([0x80 | 127]) + struct.pack(">Q", n))
        body = bytes(b ^ mask[i & 3] for i, b in enumerate(data))
        self.sock.sendall(hdr + mask + body)

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError("websocket closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv(self):
        msg = b""
        while True:
            b0, b1 = self._read(2)
            n = b1 & 127
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            mask = self._read(4) if b1 & 0x80 else None
            payload = self._read(n)
            if mask:
                payload = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
            op = b0 & 15
            if op == 8:
                raise EOFError("websocket closed by the browser")
            if op in (9, 10):  # ping/pong: chromium does not ping its clients; ignore
                continue
            msg += payload
            if b0 & 0x80:
                return msg.decode()


class Browser:
    def __init__(self, exe):
        self.dir = tempfile.mkdtemp(prefix="zlb-chromium.")
        args = [exe, "--headless=new", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-extensions", "--disable-default-apps", "--mute-audio",
                "--remote-debugging-port=0", "--user-data-dir=" + self.dir, "about:blank"]
        if os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # chromium refuses to run as root with its sandbox
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=open(
            os.path.join(self.dir, "stderr.log"), "w"))
        port_file = os.path.join(self.dir, "DevToolsActivePort")
        deadline = time.time() + 30
        while not (os.path.exists(port_file) and open(port_file).read().count("\n") >= 1):
            if time.time() > deadline or self.proc.poll() is not None:
                die("chromium did not start: " + open(os.path.join(self.dir, "stderr.log")).read()[-2000:])
            time.sleep(0.05)
        port = open(port_file).read().split("\n")[0]
        pages = []
        while not pages:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as r:
                pages = [t for t in json.load(r) if t["type"] == "page"]
            if time.time() > deadline:
                die("chromium has no page target")
        self.ws = WebSocket(pages[0]["webSocketDebuggerUrl"])
        self.next_id = 0
        self.events = []

    def call(self, method, **params):
        self.next_id += 1
        mid = self.next_id
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        while True:
            m = json.loads(self.ws.recv())
            if m.get("id") == mid:
                if "error" in m:
                    die(f"{method}: {m['error']}")
                return m.get("result", {})
            if "method" in m:
                self.events.append(m)

    def eval(self, expr):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            die(f"evaluate {expr[:60]}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait(self, expr, timeout, what):
        deadline = time.time() + timeout
        while time.time() < deadline:
            v = self.eval(expr)
            if v:
                return v
            time.sleep(0.1)
        die(f"timed out after {timeout}s waiting for {what}")

    def screenshot(self, path, full=False):
        params = {"format": "png"}
        if full:
            m = self.call("Page.getLayoutMetrics")["cssContentSize"]
            params.update(captureBeyondViewport=True,
                          clip={"x": 0, "y": 0, "width": m["width"], "height": m["height"], "scale": 1})
        data = base64.b64decode(self.call("Page.captureScreenshot", **params)["data"])
        with open(path, "wb") as f:
            f.write(data)
        print(f"  screenshot {path} ({len(data)} bytes)")

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def open(self, url, width=1280, height=1400):
        for d in ("Runtime", "Log", "Network", "Page"):
            self.call(d + ".enable")
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=1, mobile=False)
        self.call("Page.navigate", url=url)
        self.wait("document.readyState === 'complete'", 20, "the page to load")

    def problems(self, origin, allowed_log):
        """Console errors, exceptions and requests leaving the origin, as lines.
        allowed_log(entry, index) -> True for a log entry that is expected at self.events[index]."""
        out = []
        for i, e in enumerate(self.events):
            m, p = e["method"], e.get("params", {})
            if m == "Runtime.exceptionThrown":
                out.append("exception: " + json.dumps(p["exceptionDetails"])[:400])
            elif m == "Runtime.consoleAPICalled" and p["type"] in ("error", "warning", "assert"):
                out.append("console.%s: %s" % (p["type"], json.dumps(p["args"])[:300]))
            elif m == "Log.entryAdded" and p["entry"]["level"] in ("error", "warning"):
                ent = p["entry"]
                if not allowed_log(ent, i):
                    out.append("log %s (%s): %s %s" % (ent["level"], ent.get("source"),
                                                       ent.get("text"), ent.get("url", "")))
            elif m == "Network.requestWillBeSent":
                url = p["request"]["url"]
                if not (url.startswith(origin) or url.startswith("data:")):
                    out.append("request outside the page's origin: " + url)
        return out


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    die("no chromium")


def dashboard(args):
    u = urllib.parse.urlparse(args.url)
    origin = f"{u.scheme}://{u.netloc}"
    hdrs = {"Authorization": "Bearer " + args.token} if args.token else {}

    def current_stats():
        req = urllib.request.Request(origin + "/stats", headers=hdrs)
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.load(r)

    b = Browser(find_chromium())
    try:
        b.open(args.url, *args.size)
        if args.token:
            b.wait("!document.getElementById('tokenform').hidden", 10, "the token prompt")
            shown = b.eval("document.getElementById('v-open').textContent")
            if shown != "-":
                die(f"numbers shown before the token was given: open={shown}")
            print("  token prompt shown after /stats answered 401; no numbers before it")
            b.eval("document.getElementById('token').value = %s;"
                   "document.getElementById('tokenform').requestSubmit(); true" % json.dumps(args.token))
        b.wait("(function(){var s=document.querySelector('#c-conn svg');"
               "return s && Number(s.getAttribute('data-points')) >= 4;})()", 15,
               "two rows on the connections chart")
        # The numbers against /stats, a refresh apart: each must be the figure of the /stats
        # document the page last received (read from the browser's network layer, not from the
        # page), and that document at most one refresh older than what /stats says now.
        docs, bodies_done = {}, set()

        def received():
            b.call("Runtime.evaluate", expression="1")  # drain events
            for e in b.events:
                if e["method"] != "Network.responseReceived":
                    continue
                r, rid = e["params"]["response"], e["params"]["requestId"]
                if urllib.parse.urlparse(r["url"]).path != "/stats" or r["status"] != 200 \
                        or rid in bodies_done:
                    continue
                bodies_done.add(rid)
                try:
                    body = b.call("Network.getResponseBody", requestId=rid)["body"]
                    d = json.loads(body)
                    docs[d["elapsed_s"]] = d
                except SystemExit:
                    raise
                except Exception:
                    pass

        for i in range(args.samples):
            page = b.eval("(function(){var g=function(id){return document.getElementById(id)"
                          ".getAttribute('data-v')};return {elapsed:Number(g('elapsed')),"
                          "open:Number(g('v-open')),cps:Number(g('v-cps')),p99:Number(g('v-p99'))};})()")
            now_doc = current_stats()
            received()
            d = docs.get(page["elapsed"])
            if d is None:
                die(f"the page shows elapsed {page['elapsed']}, which no /stats answer it received "
                    f"had ({sorted(docs)[-3:]})")
            want = {"open": d["connections"]["open"], "cps": d["last_interval"]["connects_per_s"],
                    "p99": d["latency_us"]["connect"]["p99"]}
            lag = now_doc["elapsed_s"] - page["elapsed"]
            print(f"  sample {i}: page shows open {page['open']}, connects/s {page['cps']:.1f}, "
                  f"p99 connect {page['p99']:.1f} us of the /stats it got at elapsed "
                  f"{page['elapsed']:.3f} (open {want['open']}, connects/s {want['cps']:.1f}, "
                  f"p99 {want['p99']:.1f}); /stats now at {now_doc['elapsed_s']:.3f}: {lag:.2f}s newer")
            for k in want:
                if abs(page[k] - want[k]) > 1e-9 * max(1.0, abs(want[k])):
                    die(f"{k}: page {page[k]} != /stats {want[k]} at elapsed {page['elapsed']}")
            if lag > args.refresh + args.slack:
                die(f"the page is {lag:.2f}s behind /stats (refresh {args.refresh}s + {args.slack}s)")
            time.sleep(args.refresh)
        counts = b.eval("(function(){var o={};document.querySelectorAll('svg[data-points]')"
                        ".forEach(function(s){o[s.parentNode.id||s.parentNode.parentNode.id]="
                        "Number(s.getAttribute('data-points'))});return o;})()")
        print("  chart points:", json.dumps(counts, sort_keys=True))
        for c in ("c-conn", "c-rates", "c-load", "c-lag", "c-lat-connect"):
            if not counts.get(c):
                die(f"chart {c} has no data points")
        if args.shot:
            b.screenshot(args.shot)
        stop_sent = None  # index in b.events of the page's POST /stop
        if args.stop:
            b.eval("document.getElementById('stop').click(); true")
            deadline, status = time.time() + 10, None
            while status is None and time.time() < deadline:
                b.call("Runtime.evaluate", expression="1")
                for i, e in enumerate(b.events):
                    if (stop_sent is None and e["method"] == "Network.requestWillBeSent"
                            and e["params"]["request"]["url"].endswith("/stop")):
                        stop_sent = i
                    r = e.get("params", {}).get("response", {})
                    if e["method"] == "Network.responseReceived" and r.get("url", "").endswith("/stop"):
                        status = r["status"]
                time.sleep(0.1)
            print(f"  Stop button: POST /stop answered {status}")
            if status != 202:
                die(f"POST /stop from the page answered {status}, not 202")
        time.sleep(0.2)
        b.call("Runtime.evaluate", expression="1")  # collect the events still in flight

        def allowed(ent, index):
            # Optional endpoints this binary may not have answer 404; before the token, 401.
            # Once Stop is sent the daemon writes its report and exits, closing the port: a
            # poll in flight then fails at the socket (reset, refused, empty), which the page
            # shows as "the run may have ended". Only such failures, and only after Stop.
            path = urllib.parse.urlparse(ent.get("url", "")).path
            text = ent.get("text", "")
            if ent.get("source") != "network":
                return False
            if (stop_sent is not None and index > stop_sent and ent.get("url", "").startswith(origin)
                    and re.search(r"net::ERR_(CONNECTION_(RESET|REFUSED|CLOSED)|EMPTY_RESPONSE)", text)):
                return True
            if "status of 404" in text and path in ("/stats/series", "/run"):
                return True
            return bool(args.token) and "status of 401" in text and path == "/stats"
        probs = b.problems(origin, allowed)
        reqs = sorted({urllib.parse.urlparse(e["params"]["request"]["url"]).path for e in b.events
                       if e["method"] == "Network.requestWillBeSent"})
        print("  requests made by the page (paths):", " ".join(reqs))
        if probs:
            die("\n  ".join(["the page had problems:"] + probs))
        print("  no exceptions, console errors or requests outside " + origin)
    finally:
        b.close()


def report(args):
    path = os.path.abspath(args.file)
    b = Browser(find_chromium())
    try:
        b.open("file://" + path, *args.size)
        b.wait("document.querySelectorAll('svg[data-points]').length > 0", 10, "the report's charts")
        counts = b.eval("Array.prototype.map.call(document.querySelectorAll('svg[data-points]'),"
                        "function(s){return Number(s.getAttribute('data-points'))})")
        print(f"  report charts: {len(counts)}, points {counts}")
        if sum(1 for c in counts if c > 0) < args.min_charts:
            die(f"fewer than {args.min_charts} report charts have data points")
        title = b.eval("document.title")
        print("  title: " + title)
        if args.shot:
            b.screenshot(args.shot, full=args.full)
        b.call("Runtime.evaluate", expression="1")
        probs = b.problems("file://", lambda ent, index: False)
        if probs:
            die("\n  ".join(["the report had problems:"] + probs))
        print("  no exceptions, console errors or requests outside the file")
    finally:
        b.close()


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dashboard")
    d.add_argument("url")
    d.add_argument("--shot")
    d.add_argument("--token")
    d.add_argument("--stop", action="store_true")
    d.add_argument("--refresh", type=float, default=1.0)
    d.add_argument("--samples", type=int, default=3)
    d.add_argument("--slack", type=float, default=1.0, help="seconds allowed beyond a refresh")
    r = sub.add_parser("report")
    r.add_argument("file")
    r.add_argument("--shot")
    r.add_argument("--full", action="store_true")
    r.add_argument("--min-charts", type=int, default=1)
    for p in (d, r):
        p.add_argument("--size", default=[1280, 1400 if p is d else 1000],
                       type=lambda v: [int(x) for x in v.split("x")], help="viewport WxH")
    a = ap.parse_args()
    dashboard(a) if a.cmd == "dashboard" else report(a)


if __name__ == "__main__":
    main()
