# nginx.sh -- a private nginx for tests and benchmarks: its own prefix, config and free port, one
# process (master_process off, so SIGSTOP stalls the server itself), a 612-byte static file (the
# size of nginx's default page). Sourced; needs nothing from lib.sh.

# start_nginx DIR [CPU]: starts nginx in DIR (pinned to CPU if given) and waits until it answers;
# sets NGINX_PID and NGINX_PORT. Returns 1 when nginx is not installed or does not start.
start_nginx() {
    local dir=$1 cpu=${2:-} bin port try
    bin=$(command -v nginx 2>/dev/null || true)
    [ -z "$bin" ] && [ -x /usr/sbin/nginx ] && bin=/usr/sbin/nginx
    [ -n "$bin" ] || return 1
    mkdir -p "$dir/www" "$dir/logs" "$dir/tmp"
    head -c 611 /dev/zero | tr '\0' 'x' >"$dir/www/index.html"
    echo >>"$dir/www/index.html"
    for try in $(seq 1 20); do
        port=$((20000 + RANDOM % 40000))
        cat >"$dir/nginx.conf" <<CONF
worker_processes 1;
master_process off;
daemon off;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    default_type text/html;
    keepalive_requests 100000000;
    keepalive_timeout 60s;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    server {
        listen 127.0.0.1:$port;
        root $dir/www;
        location / { }
    }
}
CONF
        if [ -n "$cpu" ]; then
            taskset -c "$cpu" "$bin" -p "$dir" -c "$dir/nginx.conf" -e "$dir/logs/error.log" \
                >"$dir/logs/stdout.log" 2>&1 &
        else
            "$bin" -p "$dir" -c "$dir/nginx.conf" -e "$dir/logs/error.log" \
                >"$dir/logs/stdout.log" 2>&1 &
        fi
        NGINX_PID=$!
        NGINX_PORT=$port
        for _ in $(seq 1 100); do
            kill -0 "$NGINX_PID" 2>/dev/null || break # bind failed: try another port
            if curl -sf -o /dev/null "http://127.0.0.1:$port/"; then
                return 0
            fi
            sleep 0.05
        done
        kill "$NGINX_PID" 2>/dev/null || true
        wait "$NGINX_PID" 2>/dev/null || true
    done
    return 1
}

# stop_nginx: stops what start_nginx started (SIGCONT first, in case a test left it stopped).
stop_nginx() {
    [ -n "${NGINX_PID:-}" ] || return 0
    kill -CONT "$NGINX_PID" 2>/dev/null || true
    kill -QUIT "$NGINX_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$NGINX_PID" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$NGINX_PID" 2>/dev/null || true
    wait "$NGINX_PID" 2>/dev/null || true
    NGINX_PID=
}
