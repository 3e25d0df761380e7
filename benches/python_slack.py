"""Baseline for the runtime benchmark: the slack playbook's own app.py run natively in one warm CPython
process, with the same recorded (in-memory) HTTP answer the WASM run gets. Prints alerts/s.

usage: python3 benches/python_slack.py BINDINGS_DIR N
"""
import json, sys, time
from pathlib import Path

root = Path(__file__).resolve().parent.parent
sys.path[:0] = [sys.argv[1], str(root / "playbooks/_lib"), str(root / "playbooks/slack")]
from wit_world.imports import types, settings, log, http  # noqa: E402

settings.get = lambda name: {"SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/X"}.get(name)
settings.require = lambda name: settings.get(name)
log.write = lambda level, message: None
http.send = lambda req: http.Response(status=200, headers=[], body=b"ok")
import app  # noqa: E402

raw = (root / "specs/alerts/terminal-shell-k8s.json").read_text()
a = json.loads(raw)
alert = types.Alert(uuid=a["uuid"], output=a["output"], priority=a["priority"], rule=a["rule"], time=a["time"],
                    subject="falco.notice.terminal_shell_in_container", source=a["source"], hostname=a["hostname"],
                    tags=a["tags"], output_fields=[(k, None if v is None else str(v)) for k, v in a["output_fields"].items()],
                    raw=raw)
handler = app.WitWorld()
n = int(sys.argv[2])
for _ in range(200):
    handler.handle(alert)
start = time.perf_counter()
for _ in range(n):
    handler.handle(alert)
print(f"{n / (time.perf_counter() - start):.0f}")
