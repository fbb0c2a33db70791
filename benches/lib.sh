# shellcheck shell=bash
# Shell helpers the bench scripts share (benches/cpu.sh, density.sh, origin.sh, cluster.sh,
# profile.sh source this file after they cd to the repository root). Functions only: sourcing
# it starts nothing and sets no variable.
#
# What the functions read from the sourcing script:
#   LOG_PREFIX   the script's name in its log lines (log, fail);
#   WORK         its work directory (fail, free_port, cleanup), KEEP_WORK (1: cleanup keeps
#                WORK), KEPT_WHAT (what fail says is kept in WORK, default "logs");
#   PIDS         the background processes it started and has not reaped yet (cleanup,
#                forget, stop_pid); MEMDIR (optional, cleanup removes it);
#   TCK, IDLE_CORES, IDLE_TRIES, IDLE_SEEN, LOG_IDLE_OK (wait_idle).

log() { echo "$LOG_PREFIX: $*" >&2; }
fail() {
    FAILED=1
    log "$*"
    log "${KEPT_WHAT:-logs} kept in $WORK"
    exit 1
}

# ---- processes -----------------------------------------------------------------------------
# Running (not gone, not a zombie waiting to be reaped).
alive() { [[ -r /proc/$1/stat ]] && [[ $(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) != Z ]]; }
gone() { ! alive "$1"; }
wait_until() { # seconds, command...
    local deadline=$(($(date +%s) + $1))
    shift
    until "$@"; do
        (($(date +%s) < deadline)) || return 1
        sleep 0.2
    done
}
# Drops a reaped PID from the cleanup list.
forget() {
    local p keep=()
    for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}
# Stops a process we started: signal, bounded wait, then SIGKILL; reaps it.
stop_pid() { # pid signal seconds
    kill "-$2" "$1" 2>/dev/null || true
    if ! wait_until "$3" gone "$1"; then
        log "PID $1 did not stop on SIG$2 within $3 s; killing it"
        kill -KILL "$1" 2>/dev/null || true
    fi
    wait "$1" 2>/dev/null || true
    forget "$1"
}
# The EXIT trap: SIGTERM to what still runs of PIDS, SIGKILL to what still runs 1 s later;
# removes MEMDIR, and WORK unless the run failed or KEEP_WORK is 1.
cleanup() {
    local p i left=()
    for p in "${PIDS[@]}"; do
        if alive "$p"; then
            kill -TERM "$p" 2>/dev/null || true
            left+=("$p")
        fi
    done
    for ((i = 0; i < 10 && ${#left[@]} > 0; i++)); do
        sleep 0.1
        for p in "${!left[@]}"; do alive "${left[$p]}" || unset 'left[p]'; done
    done
    for p in "${left[@]}"; do
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true # reaped here, bash prints no "Killed" line
    done
    if [[ -n ${MEMDIR:-} ]]; then rm -rf "$MEMDIR"; fi
    if [[ -n ${WORK:-} && ${KEEP_WORK:-0} != 1 && -z ${FAILED:-} ]]; then rm -rf "$WORK"; fi
}

# Waits (20 s) until the whipcast at base URL $1 answers /healthz; else fails with the end of
# its log $2 ($3: what to call it, default "whipcast").
wait_healthz() { # base-url log [name]
    wait_until 20 curl -sf --noproxy '*' -m 2 -o /dev/null "$1/healthz" ||
        fail "${3:-whipcast} did not come up: $(tail -5 "$2")"
}

# ---- /proc ---------------------------------------------------------------------------------
# utime + stime (ticks) of a process, all its threads, live and exited; 0 once it is gone.
proc_ticks() {
    local t
    t=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $12 + $13}') || true
    echo "${t:-0}"
}
# Busy ticks of the whole machine (user nice system irq softirq).
sys_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8; exit}' /proc/stat; }
# A /proc/PID/status field in kB (VmRSS, VmHWM); fails once the process is gone.
status_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status" 2>/dev/null; }
# A loopback port nobody uses (TCP or UDP, v4 or v6, from the /proc/net tables), none handed
# out before in this run. Callers take it as $(free_port), a subshell: the ports handed out
# are remembered in a file, not in a variable.
free_port() {
    local i port used="$WORK/ports.used"
    for ((i = 0; i < 200; i++)); do
        port=$((20000 + RANDOM % 30000))
        if grep -qx "$port" "$used" 2>/dev/null; then continue; fi
        if ! grep -qi ":$(printf '%04X' "$port") " /proc/net/tcp /proc/net/udp /proc/net/tcp6 /proc/net/udp6 2>/dev/null; then
            echo "$port" >>"$used"
            echo "$port"
            return 0
        fi
    done
    fail "no free port found"
}
# Waits (bounded) until the rest of the machine is quiet: busy cores over 2 s < IDLE_CORES.
# Appends the busy cores it saw last to IDLE_SEEN (suffixed with ! when the wait gave up).
wait_idle() {
    local i a b busy
    for ((i = 1; i <= IDLE_TRIES; i++)); do
        a=$(sys_ticks)
        sleep 2
        b=$(sys_ticks)
        busy=$(calc "($b - $a) / $TCK / 2")
        if awk "BEGIN {exit !($busy < $IDLE_CORES)}"; then
            if [[ ${LOG_IDLE_OK:-0} == 1 ]]; then
                log "machine idle enough: ${busy} cores busy (load $(cut -d' ' -f1-3 /proc/loadavg))"
            fi
            IDLE_SEEN+=("$busy")
            return 0
        fi
        log "machine busy: ${busy} cores used by other processes; waiting ($i/$IDLE_TRIES)"
    done
    log "WARNING: machine still busy (${busy} cores); measuring anyway"
    IDLE_SEEN+=("$busy!")
}

# ---- numbers and outputs -------------------------------------------------------------------
calc() { awk "BEGIN {printf \"%.3f\", $1}"; }
# The value of key $1 in a "k=v k=v" line $2 (the bench helpers' result lines).
kv() { tr ' ' '\n' <<<"$2" | awk -F= -v k="$1" '$1 == k {print $2}'; }
# A wrk latency value (us/ms/s/m) in ms.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
        printf "%.3f", n }'
}

# ---- build and config ----------------------------------------------------------------------
# The path of bench target $1's executable, from cargo's JSON messages (builds it first if it
# is not built); empty when there is none. cargo's stderr goes to the caller's.
bench_exe() {
    cargo bench --locked --bench "$1" --no-run --message-format=json |
        grep -o "\"executable\":\"[^\"]*/$1-[0-9a-f]*\"" | tail -n1 | sed 's/^"executable":"\(.*\)"$/\1/' || true
}
# The passthrough-only ladder ([source] enabled, no rungs; Opus → AAC stays) as TOML: under
# table $1 in a whipcast config ("media.ladder"), or as a ladder file of its own ("");
# $2: an aac_coder for the audio (optional; else the ladder's default).
passthrough_ladder() { # table [aac_coder]
    local t=${1:+$1.}
    if [[ -n $1 ]]; then echo "[$1]"; fi
    cat <<EOF
rungs = []
[${t}video]
fps = 30
preset = "superfast"
profile = "high"
[${t}audio]
bitrate_kbps = 128
language = "und"
EOF
    if [[ -n ${2:-} ]]; then echo "aac_coder = \"$2\""; fi
    printf '[%ssource]\nenabled = true\n' "$t"
}
