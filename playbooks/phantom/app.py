"""phantom: create a container (label "events", status "new") in Phantom for the alert.

POST {PHANTOM_BASE_URL}/rest/container with HTTP basic auth. Phantom answers
{"success": true, "id": N}; a reply without `success` is a failure: retried on 5xx (and
408/429), a rejection otherwise, with Phantom's `message` when it gives one.
"""

from wit_world.imports import types

from riposte_playbook import (basic_auth, done, falco_text, field, flag, guarded, info,
                              iso_micro, json_of, post_json, priority, rejected, required,
                              status_error)

SEVERITIES = {
    "Emergency": "high",
    "Alert": "high",
    "Critical": "high",
    "Error": "medium",
    "Warning": "medium",
    "Notice": "low",
    "Informational": "low",
    "Debug": "low",
}


def container_for(alert):
    data = {}
    for name in ("container.id", "k8s.pod.name"):
        value = field(alert, name)
        if value is not None:
            data[name] = value
    return {
        "description": falco_text(alert),
        "name": alert.rule,
        "start_time": iso_micro(alert.time),
        # The original sent 0 for an unknown priority; Phantom knows only its severity names.
        "severity": SEVERITIES.get(priority(alert), "low"),
        "label": "events",
        "status": "new",
        "data": data,
    }


class WitWorld:
    @guarded
    def handle(self, alert: types.Alert) -> types.Outcome:
        user = required("PHANTOM_USER")
        password = required("PHANTOM_PASSWORD")
        base_url = required("PHANTOM_BASE_URL")
        verify = flag("VERIFY_SSL", True)
        what = "create Phantom container"
        reply = post_json(what, base_url.rstrip("/") + "/rest/container", container_for(alert),
                          headers=[("Accept", "application/json"),
                                   ("Authorization", basic_auth(user, password))],
                          verify_tls=verify)
        body = json_of(reply)
        if not (isinstance(body, dict) and body.get("success")):
            message = body.get("message") if isinstance(body, dict) else None
            if reply.status < 400:
                # A 2xx/3xx reply that does not say `success`: Phantom did not create it.
                raise rejected("NotCreated", f"{what}: {message or 'reply without success'}",
                               reply.status)
            raise status_error(what, reply, message=message)
        container_id = body.get("id")
        info(f"created Phantom container {container_id} for \"{alert.rule}\"")
        return done(f"Created Phantom container {container_id} \"{alert.rule}\"",
                    id=container_id, status=reply.status)
