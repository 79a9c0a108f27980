# A soak worker in sh (see worker.py): sh worker.sh WORK_MS STATUS
# Logs "start", "working" every 0.2 s, "signal" and "stop" like worker.py.
work=$1 status=$2

note() {
    printf '{"t":%s,"ev":"%s","pid":%d,"ticket":"%s","agent":"%s","loop":"%s","run":"%s","mode":"sh-fg","script":%d%s}\n' \
        "$(date +%s.%N)" "$1" $$ "$GIT_CLAIM_TICKET" "$GIT_CLAIM_AGENT" "$SOAK_LOOP" "$SOAK_RUN" \
        "$PPID" "$2" >> "$SOAK_WORKLOG"
}

stop() {
    note signal ",\"sig\":$1"
    note stop ",\"why\":\"$2\""
    exit $((128 + $1))
}

trap 'stop 15 SIGTERM' TERM
trap 'stop 2 SIGINT' INT
trap 'stop 1 SIGHUP' HUP
note start
steps=$(((work + 199) / 200))
i=0
while [ "$i" -lt "$steps" ]; do
    sleep 0.2
    note working
    i=$((i + 1))
done
note stop ',"why":"done"'
exit "$status"
