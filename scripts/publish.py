#!/usr/bin/env python3
"""Publishes Falco alerts to NATS with plain core NATS, as falcosidekick does (no client library needed).

usage: publish.py NATS_URL ALERT.json [ALERT.json...]   each on falco.<priority>.<rule slug>
"""
import json, re, socket, sys, urllib.parse

def subject(alert):
    prio = alert["priority"].lower()
    prio = "informational" if prio == "info" else prio
    return "falco.%s.%s" % (prio, re.sub(r"[^a-z0-9]+", "_", alert["rule"].lower()).strip("_"))

def main():
    url = urllib.parse.urlparse(sys.argv[1])
    sock = socket.create_connection((url.hostname or "127.0.0.1", url.port or 4222))
    sock.recv(4096)  # INFO
    connect = {"verbose": False, "pedantic": False, "name": "publish.py"}
    if url.username:
        connect.update({"user": url.username, "pass": url.password} if url.password else {"auth_token": url.username})
    sock.sendall(b"CONNECT " + json.dumps(connect).encode() + b"\r\n")
    for path in sys.argv[2:]:
        body = open(path, "rb").read().strip()
        subj = subject(json.loads(body))
        sock.sendall(b"PUB %s %d\r\n%s\r\n" % (subj.encode(), len(body), body))
        print("published %s on %s" % (path, subj))
    sock.sendall(b"PING\r\n")
    buf = b""
    while b"PONG" not in buf:
        buf += sock.recv(4096)

main()
