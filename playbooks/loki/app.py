"""loki: push the alert to Grafana Loki as one log line.

One stream per alert with a fixed set of labels, so the number of streams stays bounded whatever the alerts
say: `source`, `priority`, `rule`, `hostname` and `k8s_ns_name` (when present); never the pod, container or
any other per-event field (those are in the line: LOKI_FORMAT=json puts the whole alert there, for `| json`
in LogQL). The entry's timestamp is the event's time to the nanosecond. Loki answers 204; 429 (rate limited)
is retried after its Retry-After, 5xx retried, 4xx (an entry too old, a stream limit) rejected.
"""

import json

from wit_world.imports import types

from riposte_playbook import (basic_auth, done, epoch_nanos, falco_text, field, guarded, info, invalid_alert,
                              missing_setting, post_json, priority, required, setting, status_error)

PUSH_PATH = "/loki/api/v1/push"
LABEL_MAX = 128  # a label value is clipped: rules and hosts are few, but their names can be long


def clip(text):
    return text if len(text) <= LABEL_MAX else text[:LABEL_MAX]


def push_url(base):
    base = base.strip()
    return base if base.rstrip("/").endswith(PUSH_PATH) else base.rstrip("/") + PUSH_PATH


def labels_for(alert):
    labels = {"source": alert.source or "syscall", "priority": priority(alert), "rule": alert.rule}
    if alert.hostname:
        labels["hostname"] = alert.hostname
    namespace = field(alert, "k8s.ns.name")
    if namespace:
        labels["k8s_ns_name"] = namespace
    return {k: clip(v) for k, v in labels.items()}


class WitWorld:
    @guarded
    def handle(self, alert: types.Alert) -> types.Outcome:
        url = push_url(required("LOKI_URL"))
        line_format = (setting("LOKI_FORMAT", "json")).strip().lower()
        if line_format not in ("json", "text"):
            raise missing_setting("LOKI_FORMAT must be json or text")
        headers = []
        tenant = setting("LOKI_TENANT")
        if tenant:
            headers.append(("X-Scope-OrgID", tenant.strip()))
        user, key = setting("LOKI_USER"), setting("LOKI_API_KEY")
        if bool(user) != bool(key):
            raise missing_setting("LOKI_USER and LOKI_API_KEY go together (basic auth)")
        if user:
            headers.append(("Authorization", basic_auth(user.strip(), key)))
        nanos = epoch_nanos(alert.time)
        if nanos is None:
            raise invalid_alert(f"alert time {alert.time!r} is not an RFC 3339 time")
        line = json.dumps(json.loads(alert.raw), sort_keys=True) if line_format == "json" else falco_text(alert)
        labels = labels_for(alert)
        body = {"streams": [{"stream": labels, "values": [[str(nanos), line]]}]}
        reply = post_json("push to Loki", url, body, headers=headers)
        if not 200 <= reply.status < 300:
            raise status_error("push to Loki", reply)
        info(f"pushed \"{alert.rule}\" to Loki (HTTP {reply.status})")
        return done(f"Pushed \"{alert.rule}\" to Loki", labels=labels, status=reply.status)
