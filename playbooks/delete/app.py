"""delete: delete the pod the alert is about (`k8s.ns.name`/`k8s.pod.name`), with the pod's own
grace period. The original looked the pod up by name in every namespace; this one deletes only
the pod in the namespace the alert names."""

from wit_world.imports import kubernetes, types

from riposte_playbook import calling, done, guarded, info, pod_of


class WitWorld:
    @guarded
    def handle(self, alert: types.Alert) -> types.Outcome:
        namespace, pod = pod_of(alert)
        node = calling(f"delete pod {namespace}/{pod}", kubernetes.delete_pod, namespace, pod, None)
        info(f"deleted pod {namespace}/{pod} on node {node}")
        return done(f"Deleted pod {namespace}/{pod} (node {node})",
                    namespace=namespace, pod=pod, node=node)
