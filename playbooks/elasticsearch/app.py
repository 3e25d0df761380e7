"""elasticsearch: index the alert as one document in Elasticsearch or OpenSearch.

The document is the alert as falcosidekick publishes it, with `@timestamp` (the event's time) for Kibana and
OpenSearch Dashboards. It is created with the alert's uuid as its id (PUT <index>/_create/<uuid>), so a
redelivered alert is never indexed twice: the cluster answers 409 and the reaction is done. The index is
ELASTICSEARCH_INDEX with falcosidekick's date suffix (daily: falco-2026.12.04). Basic auth or an API key;
both APIs (Elasticsearch 7/8, OpenSearch 1/2) take the same request.
"""

import json

from wit_world.imports import http, types

from riposte_playbook import (basic_auth, calling, done, flag, guarded, info, invalid_alert, json_of,
                              missing_setting, parse_time, required, setting, status_error)

SUFFIXES = {"daily": "%Y.%m.%d", "monthly": "%Y.%m", "annually": "%Y", "none": None}
INDEX_FORBIDDEN = set('\\/*?"<>| ,#:')
_SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def quote(text):
    """`text` percent-encoded for one URL path segment."""
    return "".join(c if c in _SAFE else "".join(f"%{b:02X}" for b in c.encode("utf-8")) for c in text)


def index_for(alert):
    index = setting("ELASTICSEARCH_INDEX", "falco").strip()
    if (index != index.lower() or any(c in INDEX_FORBIDDEN for c in index) or index[0] in "-_+"
            or index in (".", "..") or len(index.encode("utf-8")) > 200):
        raise missing_setting("ELASTICSEARCH_INDEX must be a lowercase index name without \\ / * ? \" < > | , # : "
                              "or spaces, not starting with - _ +")
    suffix = setting("ELASTICSEARCH_SUFFIX", "daily").strip().lower()
    if suffix not in SUFFIXES:
        raise missing_setting("ELASTICSEARCH_SUFFIX must be daily, monthly, annually or none")
    if SUFFIXES[suffix] is None:
        return index
    parsed = parse_time(alert.time)
    if parsed is None:
        raise invalid_alert(f"alert time {alert.time!r} is not an RFC 3339 time")
    return f"{index}-{parsed[0].strftime(SUFFIXES[suffix])}"


def auth_headers():
    user, password, key = (setting("ELASTICSEARCH_USERNAME"), setting("ELASTICSEARCH_PASSWORD"),
                           setting("ELASTICSEARCH_API_KEY"))
    if key and (user or password):
        raise missing_setting("give ELASTICSEARCH_API_KEY or ELASTICSEARCH_USERNAME/ELASTICSEARCH_PASSWORD, not both")
    if bool(user) != bool(password):
        raise missing_setting("ELASTICSEARCH_USERNAME and ELASTICSEARCH_PASSWORD go together")
    if key:
        return [("Authorization", f"ApiKey {key.strip()}")]
    if user:
        return [("Authorization", basic_auth(user.strip(), password))]
    return []


class WitWorld:
    @guarded
    def handle(self, alert: types.Alert) -> types.Outcome:
        base = required("ELASTICSEARCH_URL").strip().rstrip("/")
        index = index_for(alert)
        headers = auth_headers()
        document = json.loads(alert.raw)
        document["@timestamp"] = alert.time
        if alert.uuid:
            method, url = "PUT", f"{base}/{quote(index)}/_create/{quote(alert.uuid)}"
        else:
            method, url = "POST", f"{base}/{quote(index)}/_doc"
        request = http.Request(method=method, url=url,
                               headers=[("Content-Type", "application/json")] + headers,
                               body=json.dumps(document).encode("utf-8"), verify_tls=flag("VERIFY_SSL"))
        what = f"index the alert in {index}"
        reply = calling(what, http.send, request)
        if reply.status == 409 and alert.uuid:
            info(f"\"{alert.rule}\" was already indexed in {index} (a redelivery)")
            return done(f"Already indexed \"{alert.rule}\" in {index}", index=index, id=alert.uuid, status=409)
        if not 200 <= reply.status < 300:
            raise status_error(what, reply)
        doc_id = (json_of(reply) or {}).get("_id") or alert.uuid or None
        info(f"indexed \"{alert.rule}\" in {index} (HTTP {reply.status})")
        return done(f"Indexed \"{alert.rule}\" in {index}", index=index, id=doc_id, status=reply.status)
