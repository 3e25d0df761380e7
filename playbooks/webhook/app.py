"""webhook: POST the alert as JSON to any HTTP endpoint.

The body is the alert as falcosidekick publishes it (uuid, output, priority, rule, time, output_fields,
source, hostname, tags), exactly as received; WEBHOOK_HEADERS adds headers such as an Authorization or a
tenant. Any 2xx is success; 408, 425, 429 and 5xx are retried (a 429's Retry-After is honoured by the runner);
any other status is a rejection.
"""

import json

from wit_world.imports import types

from riposte_playbook import (done, flag, guarded, info, missing_setting, post_json, required, setting,
                              status_error)

# Headers riposte sets itself or that would change what is sent.
RESERVED = {"content-type", "content-length", "host", "transfer-encoding", "connection"}
MAX_HEADERS = 16


def headers_from(text):
    """[(name, value)] from "Name: value" lines or comma-separated pairs; `missing-setting` when malformed."""
    if text is None:
        return []
    out = []
    for part in text.replace("\n", ",").split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, value = part.partition(":")
        name = name.strip()
        if not sep or not name or any(c in name for c in " \t()<>@;\\\"/[]?={}") or not name.isascii():
            raise missing_setting("WEBHOOK_HEADERS: each header is \"Name: value\" (a name without spaces)")
        if name.lower() in RESERVED:
            raise missing_setting(f"WEBHOOK_HEADERS: {name} is set by riposte and cannot be given")
        out.append((name, value.strip()))
    if len(out) > MAX_HEADERS:
        raise missing_setting(f"WEBHOOK_HEADERS: at most {MAX_HEADERS} headers")
    return out


class WitWorld:
    @guarded
    def handle(self, alert: types.Alert) -> types.Outcome:
        url = required("WEBHOOK_URL")
        headers = headers_from(setting("WEBHOOK_HEADERS"))
        verify = flag("VERIFY_SSL")
        body = json.loads(alert.raw)
        reply = post_json("post to the webhook", url, body, headers=headers, verify_tls=verify)
        if not 200 <= reply.status < 300:
            raise status_error("post to the webhook", reply)
        info(f"posted \"{alert.rule}\" to the webhook (HTTP {reply.status})")
        return done(f"Posted \"{alert.rule}\" to the webhook", status=reply.status)
