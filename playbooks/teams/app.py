"""teams: post the alert to a Microsoft Teams channel as an Adaptive Card.

Both kinds of Teams webhook take the same message: a Workflows webhook ("Post to a channel when a webhook
request is received", which answers 202) and a legacy incoming webhook (200). The card has the rule as its
title, coloured by priority, the alert's text, and the facts Priority, Time, Hostname, Source, and the pod and
container when the alert has them.
"""

from wit_world.imports import types

from riposte_playbook import (done, falco_text, field, guarded, http_date, info, post_json, priority,
                              required, status_error)

# Adaptive Card text colours: attention (red), warning (amber), accent (blue), default.
COLORS = {
    "Emergency": "attention", "Alert": "attention", "Critical": "attention", "Error": "attention",
    "Warning": "warning", "Notice": "accent", "Informational": "default", "Debug": "default",
}


def card_for(alert):
    prio = priority(alert)
    facts = [
        {"title": "Priority", "value": prio},
        {"title": "Time", "value": http_date(alert.time)},
    ]
    for title, value in (("Hostname", alert.hostname), ("Source", alert.source),
                         ("Namespace", field(alert, "k8s.ns.name")), ("Pod", field(alert, "k8s.pod.name")),
                         ("Container", field(alert, "container.id"))):
        if value:
            facts.append({"title": title, "value": value})
    if alert.tags:
        facts.append({"title": "Tags", "value": ", ".join(alert.tags)})
    return {
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "msteams": {"width": "Full"},
                "body": [
                    {"type": "TextBlock", "text": f"Falco: {alert.rule}", "weight": "Bolder", "size": "Medium",
                     "color": COLORS.get(prio, "default"), "wrap": True},
                    {"type": "TextBlock", "text": falco_text(alert), "wrap": True},
                    {"type": "FactSet", "facts": facts},
                ],
            },
        }],
    }


class WitWorld:
    @guarded
    def handle(self, alert: types.Alert) -> types.Outcome:
        url = required("TEAMS_WEBHOOK_URL")
        reply = post_json("post to Teams", url, card_for(alert))
        if not 200 <= reply.status < 300:
            raise status_error("post to Teams", reply)
        info(f"posted \"{alert.rule}\" to Teams (HTTP {reply.status})")
        return done(f"Posted \"{alert.rule}\" to Teams", status=reply.status)
