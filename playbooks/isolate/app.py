"""isolate: label the alerted pod and make sure a NetworkPolicy in its namespace denies all of
its ingress and egress. The original only added the label `isolated=true` and relied on a
policy applied by hand; the host's `isolate-pod` verb does both."""

from wit_world.imports import kubernetes, types

from riposte_playbook import calling, done, guarded, info, pod_of


class WitWorld:
    @guarded
    def handle(self, alert: types.Alert) -> types.Outcome:
        namespace, pod = pod_of(alert)
        policy = calling(f"isolate pod {namespace}/{pod}", kubernetes.isolate_pod, namespace, pod)
        info(f"isolated pod {namespace}/{pod} with NetworkPolicy {policy}")
        return done(f"Isolated pod {namespace}/{pod} with NetworkPolicy {policy}",
                    namespace=namespace, pod=pod, policy=policy)
