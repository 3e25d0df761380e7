"""Helpers shared by riposte's Python playbooks.

Everything here runs inside the component: it imports only the generated bindings
(`wit_world`, `componentize_py_types`) and the standard library (json, base64, datetime).
Call the imports through their modules (`http.send`, not `from ... import send`) so the
spec harness can stand in for them.

    from riposte_playbook import guarded, pod_of, done

    class WitWorld:
        @guarded
        def handle(self, alert):
            namespace, pod = pod_of(alert)
            ...
            return done(f"Deleted pod {namespace}/{pod}", namespace=namespace, pod=pod)

Errors are raised as `Err(types.Error_...)`; only `Error_Failed` is retried by the runner.
Setting values are secrets to riposte: never put one in a message, a log line or a detail.
"""

import base64
import datetime
import json

from componentize_py_types import Err
from wit_world.imports import http, log, settings, types

# --------------------------------------------------------------------------- errors


def invalid_alert(text):
    """The alert lacks what the playbook needs. Never retried."""
    return Err(types.Error_InvalidAlert(text))


def missing_setting(text):
    """A setting is missing or malformed; `text` must name it (never show its value)."""
    return Err(types.Error_MissingSetting(text))


def failed(text):
    """A transient failure: the runner retries it."""
    return Err(types.Error_Failed(text))


def rejected(reason, message, code):
    """A remote API refused the request: not retried."""
    return Err(types.Error_Rejected(types.ApiError(reason=reason, message=message, code=code)))


def guarded(handle):
    """Decorate `WitWorld.handle`: an unexpected Python exception becomes `Error_Failed`
    with its type and text instead of trapping (and retiring) the instance."""

    def wrapper(self, alert):
        try:
            return handle(self, alert)
        except Err:
            raise
        except Exception as e:  # a bug or an alert shape we did not foresee
            if _needs_sockets(e):
                # A refusal of the sandbox, not a transient failure: retrying can never succeed.
                raise Err(types.Error_Denied(NO_SOCKETS))
            raise failed(f"playbook error: {type(e).__name__}: {e}")

    wrapper.__name__ = getattr(handle, "__name__", "handle")
    wrapper.__doc__ = getattr(handle, "__doc__", None)
    return wrapper


NO_SOCKETS = ("the sandbox has no sockets: send HTTP with post_json (the http capability) instead of opening "
              "a connection yourself (urllib, http.client, requests)")

_SOCKET_WORDS = ("ssl", "socket", "getaddrinfo", "unknown handle index",
                 # urllib and http.client encode the host name with the idna codec before they resolve it
                 "unknown encoding: idna")
# Modules that only work with sockets: imported inside a function they are not bundled, so the import fails.
_NETWORK_MODULES = ("socket", "ssl", "urllib", "http", "requests", "urllib3", "httpx", "aiohttp", "smtplib",
                    "ftplib", "websocket", "websockets")


def _needs_sockets(e):
    """Whether an exception comes from code that tried to open a network connection itself (requests,
    urllib, http.client): the sandbox has no sockets, only the http capability."""
    if isinstance(e, ConnectionError):
        return True
    if isinstance(e, ModuleNotFoundError) and (e.name or "").split(".")[0] in _NETWORK_MODULES:
        return True
    text = f"{type(e).__name__} {e}".lower()
    return any(w in text for w in _SOCKET_WORDS)


def calling(what, fn, *args):
    """Call a host import, prefixing its error with `what` ("delete pod default/x") so the
    result says which call failed. The error kind (and a rejection's reason and code) is kept,
    so a Kubernetes NotFound stays `rejected` and a network error stays `failed`."""
    try:
        return fn(*args)
    except Err as e:
        err = e.value
        if isinstance(err, types.Error_Rejected):
            api = err.value
            raise rejected(api.reason, f"{what}: {api.message}", api.code)
        if isinstance(err, (types.Error_InvalidAlert, types.Error_MissingSetting,
                            types.Error_Denied, types.Error_Failed)):
            raise Err(type(err)(f"{what}: {err.value}"))
        raise


def done(message, **detail):
    """The outcome: one line for a person and the keyword arguments that are not None as a
    small JSON detail."""
    detail = {k: v for k, v in detail.items() if v is not None}
    return types.Outcome(message=message,
                         detail=json.dumps(detail, sort_keys=True) if detail else None)


def info(message):
    """Log `message` at info level (it appears in the result's logs; secret values are redacted)."""
    log.write(log.Level.INFO, message)


# --------------------------------------------------------------------------- settings


def setting(name, default=None):
    """A setting's value; `default` if it is unset or blank (the manifest's default normally
    arrives from the host already)."""
    value = settings.get(name)
    if value is None or value.strip() == "":
        return default
    return value


def required(name):
    """A required setting, or `missing-setting` naming it."""
    value = settings.require(name)
    if value.strip() == "":
        raise missing_setting(f"{name} is empty")
    return value


_TRUE = ("true", "yes", "1", "on")
_FALSE = ("false", "no", "0", "off")


def flag(name, default=True):
    """A yes/no setting such as VERIFY_SSL: true/yes/1/on or false/no/0/off, any case.
    Anything else is `missing-setting` (the original silently read it as false)."""
    value = setting(name)
    if value is None:
        return default
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise missing_setting(f"{name} must be true or false")


def integer(name, default, minimum=1, maximum=None):
    """A whole-number setting, or `missing-setting` naming it."""
    value = setting(name)
    if value is None:
        return default
    try:
        n = int(value.strip(), 10)
    except ValueError:
        raise missing_setting(f"{name} must be a whole number")
    if n < minimum or (maximum is not None and n > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise missing_setting(f"{name} must be {bound}")
    return n


# --------------------------------------------------------------------------- the alert


def fields(alert):
    """`output_fields` as a dict of text (integers in decimal) or None."""
    return dict(alert.output_fields)


def field(alert, name):
    """One output field, or None when it is absent, null, empty or Falco's "<NA>"."""
    for key, value in alert.output_fields:
        if key == name:
            if value is None or value == "" or value == "<NA>":
                return None
            return value
    return None


def pod_of(alert):
    """(namespace, pod) from `k8s.ns.name` and `k8s.pod.name`, or `invalid-alert`.
    The original looked the pod up by name in every namespace; riposte acts only on the pod
    of the namespace the alert names."""
    pod = field(alert, "k8s.pod.name")
    namespace = field(alert, "k8s.ns.name")
    if pod is None:
        raise invalid_alert(
            f"alert has no k8s.pod.name (rule \"{alert.rule}\" is not about a Kubernetes pod, "
            "or its output lacks %k8s.pod.name)")
    if namespace is None:
        raise invalid_alert(
            f"alert has no k8s.ns.name for pod {pod} (add %k8s.ns.name to the rule's output)")
    return namespace, pod


_PREFIX_CHARS = set("0123456789:.-+TZ")


def falco_text(alert):
    """The alert's output without Falco's "14:05:12.123456789: Notice " prefix (time, then
    priority). The rest is kept whole, even when it contains another ": " (the original
    split on every ": " and kept only the second piece)."""
    out = alert.output
    head, sep, rest = out.partition(": ")
    if not (sep and head and set(head) <= _PREFIX_CHARS and any(c.isdigit() for c in head)):
        return out
    word, sep, tail = rest.partition(" ")
    if sep and (word.lower() in _PRIORITY_NAMES or word.lower() == alert.priority.lower()):
        return tail
    return rest


# --------------------------------------------------------------------------- priorities

PRIORITIES = ("Emergency", "Alert", "Critical", "Error", "Warning", "Notice",
              "Informational", "Debug")
_PRIORITY_NAMES = {p.lower(): p for p in PRIORITIES}
_PRIORITY_NAMES.update({"info": "Informational", "warn": "Warning", "err": "Error",
                        "crit": "Critical", "emerg": "Emergency"})


def priority(alert):
    """The alert's priority in Falco's spelling ("Notice", "Informational", ...), whatever
    its case; an unknown priority is returned as is."""
    p = alert.priority.strip()
    return _PRIORITY_NAMES.get(p.lower(), p)


# --------------------------------------------------------------------------- time

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def parse_time(text):
    """(UTC datetime to the microsecond, nanoseconds of the second) from RFC 3339 text with any
    number of fraction digits, or None if it is not RFC 3339."""
    try:
        s = text.strip()
        date, t = s[:10], s[11:]
        if len(s) < 20 or s[10] not in "Tt ":
            return None
        if t[-1] in "Zz":
            zone, t = datetime.timezone.utc, t[:-1]
        else:
            sign = 1 if t[-6] == "+" else -1 if t[-6] == "-" else 0
            if sign == 0 or t[-3] != ":":
                return None
            zone = datetime.timezone(sign * datetime.timedelta(hours=int(t[-5:-3]),
                                                               minutes=int(t[-2:])))
            t = t[:-6]
        clock, _, frac = t.partition(".")
        if frac and not frac.isdigit():
            return None
        nanos = int((frac + "000000000")[:9])
        y, mo, d = (int(x) for x in date.split("-"))
        h, mi, sec = (int(x) for x in clock.split(":"))
        moment = datetime.datetime(y, mo, d, h, mi, sec, nanos // 1000, tzinfo=zone)
        return moment.astimezone(datetime.timezone.utc), nanos
    except (ValueError, IndexError):
        return None


def http_date(text):
    """RFC 3339 time as an HTTP/RFC 2822 date in GMT, "Thu, 24 May 2018 10:22:15 GMT" (how the
    original Slack playbook showed it); the text unchanged if it does not parse."""
    parsed = parse_time(text)
    if parsed is None:
        return text
    t = parsed[0]
    return (f"{_DAYS[t.weekday()]}, {t.day:02d} {_MONTHS[t.month - 1]} {t.year:04d} "
            f"{t.hour:02d}:{t.minute:02d}:{t.second:02d} GMT")


def iso_micro(text):
    """RFC 3339 time in UTC to the microsecond, "2018-05-24T10:22:15.576767Z" (how the original
    Phantom playbook sent it); the text unchanged if it does not parse."""
    parsed = parse_time(text)
    if parsed is None:
        return text
    t = parsed[0]
    s = f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
    if t.microsecond:
        s += f".{t.microsecond:06d}"
    return s + "Z"


def epoch_nanos(text):
    """RFC 3339 time as nanoseconds since the epoch (Falco's `evt.time`), or None."""
    parsed = parse_time(text)
    if parsed is None:
        return None
    t, nanos = parsed
    seconds = (t - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)) // datetime.timedelta(seconds=1)
    return seconds * 1_000_000_000 + nanos


# --------------------------------------------------------------------------- http

_TRANSIENT = (408, 425, 429)


def post_json(what, url, body, headers=(), verify_tls=True):
    """POST `body` as JSON; returns the `http.Response` (any status). A network error is
    `failed` and a host the function may not reach is `denied`, both naming `what`."""
    request = http.Request(
        method="POST",
        url=url,
        headers=[("Content-Type", "application/json")] + list(headers),
        body=json.dumps(body).encode("utf-8"),
        verify_tls=verify_tls,
    )
    return calling(what, http.send, request)


def json_of(response):
    """The reply's body parsed as JSON, or None."""
    try:
        return json.loads(response.body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None


def status_error(what, response, message=None):
    """The error for a reply that is not what we wanted: `failed` (retried) for 5xx, 408, 425
    and 429, `rejected` with the status otherwise (a 2xx or 3xx we did not expect included:
    sending again could duplicate what the server may have done)."""
    status = response.status
    text = message if message is not None else _snippet(response.body)
    if status >= 500 or status in _TRANSIENT:
        return failed(f"{what}: HTTP {status}" + (f": {text}" if text else ""))
    if status < 400:
        return rejected("UnexpectedStatus", f"{what}: unexpected HTTP {status}"
                        + (f": {text}" if text else ""), status)
    return rejected(_REASONS.get(status, f"HTTP {status}"),
                    f"{what}: {text}" if text else what, status)


def basic_auth(user, password):
    """The value of an `Authorization` header for HTTP basic auth."""
    token = base64.b64encode(f"{user}:{password}".encode("utf-8")).decode("ascii")
    return f"Basic {token}"


def _snippet(body, limit=300):
    text = body.decode("utf-8", "replace").strip().replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "..."


_REASONS = {400: "Bad Request",
            401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            405: "Method Not Allowed", 409: "Conflict", 410: "Gone",
            413: "Payload Too Large", 415: "Unsupported Media Type",
            422: "Unprocessable Entity"}
