"""pagerduty: trigger a PagerDuty incident for the alert through the Events API v2.

One event per alert, event_action "trigger". Its dedup_key is the rule with the pod (namespace/pod) or, for an
alert not about a pod, the host: alerts of one rule on one pod fold into one open incident, and a redelivered
alert never opens a second one. The severity follows Falco's priority (Emergency, Alert, Critical → critical;
Error → error; Warning → warning; the rest → info). PagerDuty answers 202; 429 is retried after its
Retry-After, 5xx retried, 400 (a malformed event or a wrong routing key) rejected.
"""

import hashlib

from wit_world.imports import types

from riposte_playbook import (done, falco_text, field, fields, guarded, info, iso_micro, json_of, post_json,
                              priority, required, setting, status_error)

SEVERITY = {"Emergency": "critical", "Alert": "critical", "Critical": "critical", "Error": "error",
            "Warning": "warning"}
SUMMARY_MAX = 1024  # PagerDuty's bound on payload.summary


def dedup_key(alert):
    pod = field(alert, "k8s.pod.name")
    where = f"{field(alert, 'k8s.ns.name') or ''}/{pod}" if pod else (alert.hostname or "")
    key = f"falco:{alert.rule}:{where}"
    # PagerDuty bounds dedup_key at 255 characters: a long one is replaced by its digest.
    return key if len(key) <= 255 else "falco:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


def event_for(alert, routing_key):
    summary = f"{alert.rule}: {falco_text(alert)}"
    if len(summary) > SUMMARY_MAX:
        summary = summary[:SUMMARY_MAX - 3] + "..."
    details = {"rule": alert.rule, "priority": priority(alert), "output": alert.output, "tags": list(alert.tags),
               "output_fields": fields(alert), "uuid": alert.uuid}
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key(alert),
        "payload": {
            "summary": summary,
            "source": field(alert, "k8s.pod.name") or alert.hostname or "falco",
            "severity": SEVERITY.get(priority(alert), "info"),
            "timestamp": iso_micro(alert.time),
            "component": field(alert, "container.image.repository") or alert.source or None,
            "group": field(alert, "k8s.ns.name") or None,
            "class": alert.source or None,
            "custom_details": details,
        },
        "client": "riposte (Falco)",
    }


class WitWorld:
    @guarded
    def handle(self, alert: types.Alert) -> types.Outcome:
        key = required("PAGERDUTY_ROUTING_KEY")
        url = setting("PAGERDUTY_EVENTS_URL", "https://events.pagerduty.com/v2/enqueue")
        event = event_for(alert, key)
        event["payload"] = {k: v for k, v in event["payload"].items() if v is not None}
        reply = post_json("send the event to PagerDuty", url, event)
        if not 200 <= reply.status < 300:
            raise status_error("send the event to PagerDuty", reply)
        info(f"PagerDuty took the event for \"{alert.rule}\" (HTTP {reply.status})")
        answer = json_of(reply) or {}
        return done(f"Triggered PagerDuty incident {event['dedup_key']}", dedup_key=event["dedup_key"],
                    severity=event["payload"]["severity"], status=reply.status,
                    pagerduty_status=answer.get("status"))
