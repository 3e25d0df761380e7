"""opsgenie: create an Opsgenie alert for the Falco alert through the Alerts API.

The priority follows Falco's (Emergency, Alert → P1; Critical → P2; Error → P3; Warning → P4; the rest → P5).
The alias (Opsgenie's deduplication key) is the rule with the pod or the host, so repeats of one rule on one
pod add to one open alert. Opsgenie answers 202 (the request is processed asynchronously); 429 is retried
after its Retry-After, 5xx retried, 4xx (a bad key, a malformed alert) rejected.
"""

import hashlib

from wit_world.imports import types

from riposte_playbook import (done, falco_text, field, fields, guarded, info, json_of, post_json, priority,
                              required, setting, status_error)

PRIORITY = {"Emergency": "P1", "Alert": "P1", "Critical": "P2", "Error": "P3", "Warning": "P4"}
# Opsgenie's bounds: message 130 characters, alias 512, description 15000, a tag 50, details values 8000.
MESSAGE_MAX, ALIAS_MAX, DESCRIPTION_MAX, TAG_MAX, DETAIL_MAX = 130, 512, 15000, 50, 8000


def clip(text, limit):
    return text if len(text) <= limit else text[:limit - 3] + "..."


def alias_for(alert):
    pod = field(alert, "k8s.pod.name")
    where = f"{field(alert, 'k8s.ns.name') or ''}/{pod}" if pod else (alert.hostname or "")
    alias = f"falco:{alert.rule}:{where}"
    return alias if len(alias) <= ALIAS_MAX else "falco:" + hashlib.sha256(alias.encode("utf-8")).hexdigest()


def alert_for(alert, responders):
    details = {"rule": alert.rule, "priority": priority(alert), "source": alert.source,
               "hostname": alert.hostname, "uuid": alert.uuid}
    for name, value in fields(alert).items():
        if value is not None:
            details[name] = clip(value, DETAIL_MAX)
    body = {
        "message": clip(f"Falco: {alert.rule}", MESSAGE_MAX),
        "alias": alias_for(alert),
        "description": clip(falco_text(alert), DESCRIPTION_MAX),
        "priority": PRIORITY.get(priority(alert), "P5"),
        "source": "Falco",
        "tags": [clip(t, TAG_MAX) for t in ["falco", *alert.tags]][:20],
        "details": {k: v for k, v in details.items() if v},
        "entity": field(alert, "k8s.pod.name") or alert.hostname or "",
    }
    if responders:
        body["responders"] = [{"type": "team", "name": name} for name in responders]
    return body


class WitWorld:
    @guarded
    def handle(self, alert: types.Alert) -> types.Outcome:
        key = required("OPSGENIE_API_KEY")
        url = setting("OPSGENIE_URL", "https://api.opsgenie.com/v2/alerts")
        responders = [t.strip() for t in (setting("OPSGENIE_RESPONDERS") or "").split(",") if t.strip()]
        body = alert_for(alert, responders)
        reply = post_json("create the Opsgenie alert", url, body, headers=[("Authorization", f"GenieKey {key}")])
        if not 200 <= reply.status < 300:
            raise status_error("create the Opsgenie alert", reply)
        request_id = (json_of(reply) or {}).get("requestId")
        info(f"Opsgenie took the alert for \"{alert.rule}\" (HTTP {reply.status})")
        return done(f"Created Opsgenie alert {body['alias']} ({body['priority']})", alias=body["alias"],
                    priority=body["priority"], request_id=request_id, status=reply.status)
