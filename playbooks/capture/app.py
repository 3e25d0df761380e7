"""capture: create the Job `sysdig-<pod>-<evt.time>` on the alerted pod's node; it captures with
Sysdig for CAPTURE_DURATION seconds and uploads `<job>.scap.gz` to AWS_S3_BUCKET.

The container's environment is the original's: AWS_S3_BUCKET, CAPTURE_DURATION,
CAPTURE_FILE_NAME, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY. The job name is made a valid
Kubernetes name (lower case, [a-z0-9-], at most 63 characters, keeping the event time)."""

from wit_world.imports import kubernetes, types

from riposte_playbook import (calling, done, epoch_nanos, field, guarded, info, integer,
                              invalid_alert, pod_of, required)

MAX_NAME = 63


def dns_label(text):
    """Lower-case, every run of characters outside [a-z0-9] as one '-', no '-' at either end."""
    out, dash = [], False
    for c in text.lower():
        if ("a" <= c <= "z") or ("0" <= c <= "9"):
            out.append(c)
            dash = False
        elif not dash:
            out.append("-")
            dash = True
    return "".join(out).strip("-")


def job_name(pod, event_time):
    """`sysdig-<pod>-<evt.time>` as a valid name: the pod part is shortened, never the time."""
    suffix = dns_label(event_time)
    room = MAX_NAME - len("sysdig-") - (len(suffix) + 1 if suffix else 0)
    middle = dns_label(pod)[:max(room, 0)].rstrip("-")
    name = "-".join(p for p in ("sysdig", middle, suffix) if p)
    return name[:MAX_NAME].rstrip("-")


class WitWorld:
    @guarded
    def handle(self, alert: types.Alert) -> types.Outcome:
        duration = integer("CAPTURE_DURATION", 120, minimum=1, maximum=86400)
        bucket = required("AWS_S3_BUCKET")
        key_id = required("AWS_ACCESS_KEY_ID")
        secret = required("AWS_SECRET_ACCESS_KEY")
        namespace, pod = pod_of(alert)
        event_time = field(alert, "evt.time")
        if event_time is None:
            nanos = epoch_nanos(alert.time)
            if nanos is None:
                raise invalid_alert("alert has neither evt.time nor an RFC 3339 time")
            event_time = str(nanos)
        name = job_name(pod, event_time)
        job = kubernetes.CaptureJob(
            namespace=namespace,
            pod=pod,
            job_name=name,
            duration_seconds=duration,
            s3_bucket=bucket,
            env=[
                ("AWS_S3_BUCKET", bucket),
                ("CAPTURE_DURATION", str(duration)),
                ("CAPTURE_FILE_NAME", name),
                ("AWS_ACCESS_KEY_ID", key_id),
                ("AWS_SECRET_ACCESS_KEY", secret),
            ],
        )
        created = calling(f"create capture job {name} for pod {namespace}/{pod}",
                          kubernetes.create_capture_job, job)
        info(f"started capture job {namespace}/{created} for pod {namespace}/{pod}, {duration}s")
        return done(f"Started capture job {namespace}/{created} on the node of pod "
                    f"{namespace}/{pod} for {duration}s",
                    namespace=namespace, pod=pod, job=created, duration_seconds=duration)
