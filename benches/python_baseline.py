#!/usr/bin/env python3
"""The baselines riposte's slack playbook is measured against: a warm native Python process that subscribes
with core NATS and posts the same Slack message for each alert, in one of two ways:

  requests   as the original response engine's SlackClient did: requests.post(url, data=json.dumps(message)),
             a new HTTP connection per alert (needs `requests`, which scripts/setup puts in .venv);
  keepalive  a tuned process: the standard library's http.client over one kept-alive connection.

The NATS side is a minimal protocol client over a socket (the NATS Python client is not needed to measure what
a warm Python process costs).

usage: python_baseline.py NATS_URL SUBJECT WEBHOOK_URL COUNT [requests|keepalive]
       prints "ready", then "done" after COUNT posts
"""
import email.utils, http.client, json, re, socket, sys, urllib.parse
from datetime import datetime

COLORS = {"Emergency": "#b12737", "Alert": "#f24141", "Critical": "#fc7335", "Error": "#f28143",
          "Warning": "#f9c414", "Notice": "#397ec3", "Informational": "#8fc0e7", "Debug": "#8fc0e7"}
PREFIX = re.compile(r"^\d{2}:\d{2}:\d{2}\.\d+: \w+ ")

def message_for(alert):
    when = datetime.fromisoformat(alert["time"][:26].rstrip("Z") + "+00:00")
    fields = [{"title": "Rule", "value": alert["rule"], "short": False},
              {"title": "Priority", "value": alert["priority"], "short": True},
              {"title": "Time", "value": email.utils.format_datetime(when, usegmt=True), "short": True}]
    of = alert.get("output_fields") or {}
    if of.get("k8s.pod.name") is not None:
        fields.append({"title": "Kubernetes Pod Name", "value": of["k8s.pod.name"], "short": True})
    if of.get("container.id") is not None:
        fields.append({"title": "Container Id", "value": of["container.id"], "short": True})
    return {"text": PREFIX.sub("", alert["output"]),
            "attachments": [{"color": COLORS.get(alert["priority"], "#eeeeee"), "fields": fields}]}

def main():
    nats_url, subject, webhook, count = sys.argv[1], sys.argv[2], urllib.parse.urlparse(sys.argv[3]), int(sys.argv[4])
    mode = sys.argv[5] if len(sys.argv) > 5 else "keepalive"
    n = urllib.parse.urlparse(nats_url)
    sock = socket.create_connection((n.hostname, n.port or 4222))
    reader = sock.makefile("rb")
    reader.readline()  # INFO
    sock.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\nSUB %s 1\r\nPING\r\n' % subject.encode())
    while not reader.readline().startswith(b"PONG"):
        pass
    if mode == "requests":
        import requests
        def post(message):
            requests.post(webhook.geturl(), data=json.dumps(message))
    else:
        conn = http.client.HTTPConnection(webhook.hostname, webhook.port)
        def post(message):
            conn.request("POST", webhook.path, json.dumps(message).encode(), {"Content-Type": "application/json"})
            conn.getresponse().read()
    print("ready", flush=True)
    done = 0
    while done < count:
        line = reader.readline()
        if line.startswith(b"PING"):
            sock.sendall(b"PONG\r\n")
            continue
        if not line.startswith(b"MSG"):
            continue
        size = int(line.split()[-1])
        payload = reader.read(size + 2)[:size]
        post(message_for(json.loads(payload)))
        done += 1
    print("done", flush=True)

main()
