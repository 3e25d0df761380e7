"""cordon: mark the node the alerted pod runs on unschedulable (Falco Talon's kubernetes:cordon).

No new pod is scheduled there; the pods already running stay (drain them with a playbook of its own). Cordoning
a node that is already cordoned changes nothing and succeeds."""

from wit_world.imports import kubernetes, types

from riposte_playbook import calling, done, guarded, info, pod_of


class WitWorld:
    @guarded
    def handle(self, alert: types.Alert) -> types.Outcome:
        namespace, pod = pod_of(alert)
        node = calling(f"cordon the node of pod {namespace}/{pod}", kubernetes.cordon_node_of_pod, namespace, pod)
        info(f"cordoned node {node} of pod {namespace}/{pod}")
        return done(f"Cordoned node {node} of pod {namespace}/{pod}", node=node, namespace=namespace, pod=pod)
