"""taint: add the taint TAINT_KEY=TAINT_VALUE:TAINT_EFFECT to the node the alerted pod runs on.
The original replaced all of the node's taints with this one; the host's verb keeps the others
(and replaces only a taint with the same key and effect)."""

from wit_world.imports import kubernetes, types

from riposte_playbook import calling, done, guarded, info, missing_setting, pod_of, setting

EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def taint_from_settings():
    key = setting("TAINT_KEY", "falco/alert")
    value = setting("TAINT_VALUE", "true")
    effect = setting("TAINT_EFFECT", "NoSchedule")
    if effect not in EFFECTS:
        raise missing_setting("TAINT_EFFECT must be NoSchedule, PreferNoSchedule or NoExecute")
    return kubernetes.Taint(key=key, value=value, effect=effect)


class WitWorld:
    @guarded
    def handle(self, alert: types.Alert) -> types.Outcome:
        taint = taint_from_settings()
        namespace, pod = pod_of(alert)
        node = calling(f"taint the node of pod {namespace}/{pod}", kubernetes.taint_node_of_pod,
                       namespace, pod, taint)
        shown = f"{taint.key}={taint.value}:{taint.effect}"
        info(f"tainted node {node} of pod {namespace}/{pod} with {shown}")
        return done(f"Tainted node {node} with {shown}",
                    node=node, namespace=namespace, pod=pod,
                    taint={"key": taint.key, "value": taint.value, "effect": taint.effect})
