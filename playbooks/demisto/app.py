"""demisto: create a "Policy Violation" incident in Demisto for the alert.

POST {DEMISTO_BASE_URL}/incident with the API key as `Authorization`. Demisto answers 201
Created; any other status is a failure: 5xx (and 408/429) is retried, anything else is a
rejection and is not.
"""

from wit_world.imports import types

from riposte_playbook import (done, falco_text, field, flag, guarded, info, json_of, post_json,
                              priority, required, status_error)

# Demisto severities: 0 unknown, 0.5 informational, 1 low, 2 medium, 3 high, 4 critical.
# (The original sent 5 for Informational and Debug, which Demisto does not define.)
SEVERITIES = {
    "Emergency": 4,
    "Alert": 4,
    "Critical": 4,
    "Error": 3,
    "Warning": 2,
    "Notice": 1,
    "Informational": 0.5,
    "Debug": 0.5,
}


def incident_for(alert):
    labels = [
        {"type": "Brand", "value": "Sysdig"},
        {"type": "Application", "value": "Falco"},
    ]
    for name in ("container.id", "k8s.pod.name"):
        value = field(alert, name)
        if value is not None:
            labels.append({"type": name, "value": value})
    return {
        "type": "Policy Violation",
        "name": alert.rule,
        "details": falco_text(alert),
        "severity": SEVERITIES.get(priority(alert), 0),
        "occurred": alert.time,
        "labels": labels,
    }


class WitWorld:
    @guarded
    def handle(self, alert: types.Alert) -> types.Outcome:
        api_key = required("DEMISTO_API_KEY")
        base_url = required("DEMISTO_BASE_URL")
        verify = flag("VERIFY_SSL", True)
        what = "create Demisto incident"
        reply = post_json(what, base_url.rstrip("/") + "/incident", incident_for(alert),
                          headers=[("Accept", "application/json"), ("Authorization", api_key)],
                          verify_tls=verify)
        if reply.status != 201:
            raise status_error(what, reply)
        body = json_of(reply)
        incident_id = body.get("id") if isinstance(body, dict) else None
        info(f"created Demisto incident {incident_id} for \"{alert.rule}\"")
        shown = f" {incident_id}" if incident_id is not None else ""
        return done(f"Created Demisto incident{shown} \"{alert.rule}\"", id=incident_id,
                    status=reply.status)
