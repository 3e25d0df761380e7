#!/bin/sh
# POSTs the Falco alert (stdin, also in $FALCO_ALERT) to $WEBHOOK_URL and prints one JSON line.
# Exit codes follow riposte's convention: 0 ok, 65 invalid alert, 77 refused (HTTP 4xx), 78 missing setting,
# anything else is retried.
set -u
[ -n "${WEBHOOK_URL:-}" ] || { echo "WEBHOOK_URL is not set" >&2; exit 78; }
cat > /tmp/alert.json
[ -s /tmp/alert.json ] || printf '%s' "${FALCO_ALERT:-}" > /tmp/alert.json
[ -s /tmp/alert.json ] || { echo "no alert on stdin or in FALCO_ALERT" >&2; exit 65; }
# (busybox wget's own -T crashes in Debian's busybox-static; the timeout applet does the same job.)
if timeout "${WEBHOOK_TIMEOUT:-5}" wget -q -O /tmp/reply --header "Content-Type: application/json" \
     --post-file /tmp/alert.json "$WEBHOOK_URL" 2>/tmp/error; then
  printf '{"message":"posted the alert to the webhook","bytes":%s}\n' "$(wc -c < /tmp/alert.json)"
  exit 0
fi
cat /tmp/error >&2
grep -q 'HTTP/1\.[01] 4' /tmp/error && exit 77
exit 1
