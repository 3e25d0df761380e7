"""label: add labels to the alerted pod (Falco Talon's kubernetes:label), merged with its own: a label it has
with the same key is overwritten, the others are kept. Each key and value is checked as Kubernetes checks
them (a key is an optional DNS-subdomain prefix and a name of at most 63 characters; a value at most 63
characters), so a mistake in LABELS is a missing setting named before anything is sent."""

import re

from wit_world.imports import kubernetes, types

from riposte_playbook import calling, done, guarded, info, missing_setting, pod_of, setting

NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)$")
VALUE = re.compile(r"^(([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?)$")
PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
MAX_LABELS = 32


def labels_from(text):
    labels = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        prefix, slash, name = key.rpartition("/")
        if not sep or not NAME.match(name) or (slash and (len(prefix) > 253 or not PREFIX.match(prefix))):
            raise missing_setting(f"LABELS: {key!r} is not a label key (prefix/name, the name 1-63 characters "
                                  "of letters, digits, '-', '_', '.'); write key=value,key2=value2")
        if not VALUE.match(value):
            raise missing_setting(f"LABELS: the value of {key} is not a label value (at most 63 characters of "
                                  "letters, digits, '-', '_', '.', beginning and ending with a letter or digit)")
        labels.append((key, value))
    if not labels:
        raise missing_setting("LABELS is empty: write key=value,key2=value2")
    if len(labels) > MAX_LABELS:
        raise missing_setting(f"LABELS: at most {MAX_LABELS} labels")
    return labels


class WitWorld:
    @guarded
    def handle(self, alert: types.Alert) -> types.Outcome:
        labels = labels_from(setting("LABELS", "falco.org/suspicious=true"))
        namespace, pod = pod_of(alert)
        calling(f"label pod {namespace}/{pod}", kubernetes.label_pod, namespace, pod, labels)
        shown = ",".join(f"{k}={v}" for k, v in labels)
        info(f"labelled pod {namespace}/{pod} with {shown}")
        return done(f"Labelled pod {namespace}/{pod} with {shown}", namespace=namespace, pod=pod,
                    labels=dict(labels))
