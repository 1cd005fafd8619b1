#!/bin/bash
# zlbench-healthcheck -- the image's HEALTHCHECK: GET /health on the control port answers 200
# while a run is in progress (503 once it is done). bash's /dev/tcp: no HTTP client in the image.
# ZLB_HEALTH_ADDR (default 127.0.0.1:8089) is where to ask; a port bound to 0.0.0.0 or [::] is
# reached on 127.0.0.1 too. An exposed port wants the token: it is read from the token file
# named by ZLB_CONTROL_TOKEN_FILE, when set.
set -u
addr=${ZLB_HEALTH_ADDR:-127.0.0.1:8089}
host=${addr%:*}
port=${addr##*:}
host=${host#[}
host=${host%]}
auth=
if [ -n "${ZLB_CONTROL_TOKEN_FILE:-}" ] && [ -r "$ZLB_CONTROL_TOKEN_FILE" ]; then
    auth="Authorization: Bearer $(cat "$ZLB_CONTROL_TOKEN_FILE")"$'\r\n'
fi
exec 3<>"/dev/tcp/$host/$port" || exit 1
printf 'GET /health HTTP/1.0\r\nHost: %s\r\n%sConnection: close\r\n\r\n' "$addr" "$auth" >&3
read -r -t 3 proto status rest <&3 || exit 1
[ "$status" = 200 ] || { echo "GET /health on $addr: ${status:-no answer} ${rest:-}"; exit 1; }
echo "GET /health on $addr: 200"
