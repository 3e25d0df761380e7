"""slack: post the alert to a Slack channel through an incoming webhook.

The message is the original response engine's: text = the alert's output without Falco's
time and priority prefix, one attachment coloured by priority with the fields Rule, Priority,
Time, Kubernetes Pod Name and Container Id (the last two only when the alert has them).
"""

from wit_world.imports import types

from riposte_playbook import (done, falco_text, field, guarded, http_date, info, post_json,
                              priority, required, status_error)

COLORS = {
    "Emergency": "#b12737",
    "Alert": "#f24141",
    "Critical": "#fc7335",
    "Error": "#f28143",
    "Warning": "#f9c414",
    "Notice": "#397ec3",
    "Informational": "#8fc0e7",
    "Debug": "#8fc0e7",
}


def message_for(alert):
    prio = priority(alert)
    attachment_fields = [
        {"title": "Rule", "value": alert.rule, "short": False},
        {"title": "Priority", "value": alert.priority, "short": True},
        {"title": "Time", "value": http_date(alert.time), "short": True},
    ]
    pod = field(alert, "k8s.pod.name")
    if pod is not None:
        attachment_fields.append({"title": "Kubernetes Pod Name", "value": pod, "short": True})
    container = field(alert, "container.id")
    if container is not None:
        attachment_fields.append({"title": "Container Id", "value": container, "short": True})
    return {
        "text": falco_text(alert),
        "attachments": [{"color": COLORS.get(prio, "#eeeeee"), "fields": attachment_fields}],
    }


class WitWorld:
    @guarded
    def handle(self, alert: types.Alert) -> types.Outcome:
        url = required("SLACK_WEBHOOK_URL")
        reply = post_json("post to Slack", url, message_for(alert))
        if not 200 <= reply.status < 300:
            raise status_error("post to Slack", reply)
        info(f"posted \"{alert.rule}\" to Slack (HTTP {reply.status})")
        return done(f"Posted \"{alert.rule}\" to Slack", status=reply.status)
