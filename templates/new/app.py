"""{{name}}: post the alert as JSON to a webhook.

Change `message_for` to the body your receiver expects; `riposte playbook helpers` lists the helpers.
"""

from wit_world.imports import types

from riposte_playbook import done, falco_text, field, guarded, info, post_json, priority, required, status_error


def message_for(alert):
    facts = [
        {"name": "Rule", "value": alert.rule},
        {"name": "Priority", "value": priority(alert)},
        {"name": "Time", "value": alert.time},
    ]
    for name, key in (("Pod", "k8s.pod.name"), ("Namespace", "k8s.ns.name"), ("Container", "container.id")):
        value = field(alert, key)
        if value is not None:
            facts.append({"name": name, "value": value})
    return {"text": falco_text(alert), "rule": alert.rule, "facts": facts}


class WitWorld:
    @guarded
    def handle(self, alert: types.Alert) -> types.Outcome:
        url = required("WEBHOOK_URL")
        reply = post_json("post to the webhook", url, message_for(alert))
        if not 200 <= reply.status < 300:
            raise status_error("post to the webhook", reply)
        info(f"posted \"{alert.rule}\" (HTTP {reply.status})")
        return done(f"Posted \"{alert.rule}\"", status=reply.status)
