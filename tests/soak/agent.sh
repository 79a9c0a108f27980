# The soak agents' command: sh agent.sh MODE WORK_MS STATUS
# Like many agent scripts, it starts its worker without exec: as a foreground
# child (py-fg, sh-fg), in the background and waits for it (py-bg), or as a
# daemon that forks twice and leaves the session (py-daemon), whose end it
# learns from a status file. Its own status is the worker's.
mode=$1 work=$2 status=$3
worker="$SOAK_DIR/worker.py"
case "$mode" in
py-fg)
    "$SOAK_PYTHON" -S "$worker" fg "$work" "$status"
    code=$?
    ;;
py-bg)
    "$SOAK_PYTHON" -S "$worker" bg "$work" "$status" &
    wait $!
    code=$?
    ;;
py-daemon)
    marker="$SOAK_MARKERS/$SOAK_RUN"
    "$SOAK_PYTHON" -S "$worker" daemon "$work" "$status" "$marker"
    while [ ! -s "$marker.status" ]; do
        # a daemon killed by SIGKILL writes no status
        if [ -s "$marker.pid" ] && ! kill -0 "$(cat "$marker.pid")" 2>/dev/null; then
            break
        fi
        sleep 0.1
    done
    code=$(cat "$marker.status" 2>/dev/null || echo 1)
    ;;
sh-fg)
    sh "$SOAK_DIR/worker.sh" "$work" "$status"
    code=$?
    ;;
*)
    echo "agent.sh: unknown mode $mode" >&2
    code=2
    ;;
esac
exit "$code"
