"""A Kubernetes API server for riposte's infrastructure tests: kmock's KubernetesEmulator with the fidelity
fixes kube-rs needs to talk to it as it would to a real cluster.

    python kube_emulator.py [--port 0]

Listens on 127.0.0.1 (a random port unless given), prints `listening on PORT` on stdout once it serves,
and exits when stdin closes (the Rust test support holds the pipe) or on SIGTERM.

What out-of-the-box kmock does differently from a real API server, and what `Emulator` does instead:
- errors: a real server answers `reason: NotFound` / `AlreadyExists` with `details {name, kind}` and a message
  like `pods "x" not found`; kmock says "Object Not Found" with a traceback;
- discovery: the core group's `APIResourceList.groupVersion` is `v1`, not `/v1`;
- lists: `kind: PodList` and `apiVersion`, and a `resourceVersion` that is a number;
- `labelSelector` and `fieldSelector` (`metadata.name`, `metadata.namespace`, `spec.nodeName`) filter lists;
- created objects get `apiVersion`/`kind`, the namespace from the URL, `uid`, `creationTimestamp` and a
  `resourceVersion` that grows with every change (kmock stores the body as sent);
- a patch is refused with 415 unless it is a JSON merge patch (kmock merges any body as a dict, which would make
  a strategic-merge or JSON patch look like it worked);
- a patch that names a stale `resourceVersion` is a `Conflict` (optimistic concurrency).
"""

import argparse
import asyncio
import contextvars
import datetime
import itertools
import os
import signal
import sys
import uuid

import aiohttp.web
import attrs
import kmock

RESOURCES = {
    "v1/pods": ("Pod", True),
    "v1/nodes": ("Node", False),
    "v1/namespaces": ("Namespace", False),
    "networking.k8s.io/v1/networkpolicies": ("NetworkPolicy", True),
    "batch/v1/jobs": ("Job", True),
}

def api_version(resource):
    return resource.version if not resource.group else f"{resource.group}/{resource.version}"


def selector_matches(selector, labels):
    """Equality- and set-based label selectors, as `kubectl -l` writes them."""
    if not selector:
        return True
    for term in split_terms(selector):
        term = term.strip()
        if not term:
            continue
        if " notin " in term or " in " in term:
            negate = " notin " in term
            key, values = term.split(" notin " if negate else " in ", 1)
            values = {v.strip() for v in values.strip().strip("()").split(",")}
            present = key.strip() in labels and labels[key.strip()] in values
            if present == negate:
                return False
        elif "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


def split_terms(selector):
    """Splits on commas outside parentheses (`a in (x,y),b`)."""
    depth, start = 0, 0
    for i, c in enumerate(selector):
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "," and depth == 0:
            yield selector[start:i]
            start = i + 1
    yield selector[start:]


def field_matches(selector, obj):
    if not selector:
        return True
    for term in selector.split(","):
        negate = "!=" in term
        path, value = term.replace("!=", "=").replace("==", "=").split("=", 1)
        current = obj
        for part in path.strip().split("."):
            current = current.get(part) if isinstance(current, dict) else None
        if ((current or "") == value.strip()) == negate:
            return False
    return True


# What the request being served is about (name, kind), for its error's message and details. A context variable:
# aiohttp serves each request in its own task, so concurrent requests do not see each other's.
CURRENT = contextvars.ContextVar("current", default={})


@attrs.define(kw_only=True)
class Emulator(kmock.KubernetesEmulator):
    _versions: itertools.count = attrs.field(factory=lambda: itertools.count(1000), init=False)

    def __attrs_post_init__(self):
        super().__attrs_post_init__()
        for path, (kind, namespaced) in RESOURCES.items():
            self.resources[path] = kmock.ResourceInfo(
                kind=kind, namespaced=namespaced, singular=kind.lower(),
                verbs={"get", "list", "watch", "create", "patch", "delete"},
            )

    async def _handle(self, request):
        if request.resource is not None and request.resource.plural == "selfsubjectaccessreviews":
            return self._review(request)
        if request.resource is not None:
            if request.action == kmock.action.UPDATE:
                ctype = (request.headers or {}).get("Content-Type", "").split(";")[0].strip()
                if ctype != "application/merge-patch+json":
                    raise kmock.KubernetesError(
                        status=415, reason="UnsupportedMediaType",
                        message=f"the emulator supports only JSON merge patches, not {ctype or 'no content type'}",
                        details={})
            if request.action == kmock.action.CREATE and isinstance(request.data, dict):
                self._complete(request)
            if request.action == kmock.action.UPDATE and isinstance(request.data, dict):
                self._bump(request)
        return await super()._handle(request)

    def _review(self, request):
        """A SelfSubjectAccessReview answered as a real server does: allowed unless KUBE_EMULATOR_DENY lists the
        request's "verb resource" (comma-separated, e.g. "delete pods,patch nodes")."""
        review = request.data if isinstance(request.data, dict) else {}
        attrs = (review.get("spec") or {}).get("resourceAttributes") or {}
        denied = {d.strip() for d in os.environ.get("KUBE_EMULATOR_DENY", "").split(",") if d.strip()}
        allowed = f"{attrs.get('verb', '')} {attrs.get('resource', '')}" not in denied
        review.setdefault("apiVersion", "authorization.k8s.io/v1")
        review.setdefault("kind", "SelfSubjectAccessReview")
        review["status"] = {"allowed": allowed} if allowed else {"allowed": False, "reason": "denied by the emulator"}
        return aiohttp.web.json_response(review, status=201)

    def _bump(self, request):
        """Optimistic concurrency as a real server does it: a patch that names a resourceVersion other than the
        stored one is a Conflict; every accepted change gets a new resourceVersion."""
        key = (request.resource, request.namespace, request.name)
        if key not in self.objects or self.objects[key].deleted:
            return  # kmock answers NotFound
        meta = request.data.setdefault("metadata", {}) or {}
        request.data["metadata"] = meta
        stored = (self.objects[key].get("metadata") or {}).get("resourceVersion")
        given = meta.get("resourceVersion")
        if given is not None and given != stored:
            raise kmock.KubernetesError(
                status=409, reason="Conflict",
                message=f'Operation cannot be fulfilled on {request.resource.plural} "{request.name}": '
                        "the object has been modified; please apply your changes to the latest version and try again",
                details={"name": request.name, "kind": request.resource.plural})
        meta["resourceVersion"] = str(next(self._versions))

    def _complete(self, request):
        """What a real server adds to a created object."""
        obj = request.data
        kind, _ = RESOURCES.get(f"{api_version(request.resource)}/{request.resource.plural}", (None, None))
        obj.setdefault("apiVersion", api_version(request.resource))
        if kind:
            obj.setdefault("kind", kind)
        meta = obj.setdefault("metadata", {})
        if request.namespace:
            meta["namespace"] = request.namespace
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp",
                        datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        meta["resourceVersion"] = str(next(self._versions))
        meta.setdefault("generation", 1)

    async def _serve_list(self, request):
        listed = await super()._serve_list(request)
        params = request.params or {}
        labels, fields = params.get("labelSelector"), params.get("fieldSelector")
        items = [
            item for item in listed["items"]
            if selector_matches(labels, (item.get("metadata") or {}).get("labels") or {})
            and field_matches(fields, item)
        ]
        kind, _ = RESOURCES.get(f"{api_version(request.resource)}/{request.resource.plural}", ("", None))
        return {
            "apiVersion": api_version(request.resource),
            "kind": f"{kind}List",
            "metadata": {"resourceVersion": str(next(self._versions))},
            "items": items,
        }

    async def _serve_version(self, request):
        served = await super()._serve_version(request)
        if request.resource.group == "":
            served["groupVersion"] = request.resource.version
        return served

    async def _render_error(self, exc):
        if isinstance(exc, kmock.KubernetesError):
            status, reason, message, details = exc.status, exc.reason, exc.message, exc.details
            if isinstance(exc, kmock.KubernetesNotFoundError):
                status, reason = 404, "NotFound"
            elif exc.status == 409 and exc.reason == "Object Already Exists":  # kmock's conflict, not public
                status, reason = 409, "AlreadyExists"
            details = details if isinstance(details, dict) else {}
            name, kind = CURRENT.get().get("name"), CURRENT.get().get("kind")
            if name and reason == "NotFound" and isinstance(exc, kmock.KubernetesObjectNotFoundError):
                message = f'{kind} "{name}" not found'
                details = {"name": name, "kind": kind}
            elif name and reason == "AlreadyExists":
                message = f'{kind} "{name}" already exists'
                details = {"name": name, "kind": kind}
            return aiohttp.web.json_response({
                "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
                "code": status, "reason": reason, "message": message, "details": details,
            }, status=status)
        return await super()._render_error(exc)

    async def __call__(self, raw_request):
        # Remember what the request is about (kmock parses it again; the body is cached by aiohttp).
        # kmock has no public call that parses a raw aiohttp request: Request._parse is the one private use,
        # which is why scripts/setup pins kmock to exactly 0.8.
        try:
            parsed = await kmock.Request._parse(raw_request)
            if parsed.resource is not None:
                name = parsed.name
                if name is None and isinstance(parsed.data, dict):
                    name = (parsed.data.get("metadata") or {}).get("name")
                CURRENT.set({"name": name, "kind": parsed.resource.plural})
        except Exception:
            pass
        return await super().__call__(raw_request)


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    async with Emulator() as emulator, kmock.Server(emulator, port=args.port or None) as server:
        print(f"listening on {server.port}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not sys.stdin.buffer.read1(4096) else None)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
