#!/usr/bin/env bash
# Two hosts (network namespaces joined by one veth, 198.18.9.0/24), a release meshd in each,
# an idle ping and one iperf3 TCP stream from host A's overlay address to host B's, then the
# throughput with the CPU seconds both meshds used per GB, and the datapath counters and
# drops of both meshds. With PROFILE=1 it also records a system-wide `perf` profile during
# the transfer and prints the top symbols. Root only; everything it
# makes is removed at the end, also on failure. For quick what-changed checks of the fast
# path; ./scripts/bench.sh is the side-by-side benchmark.
#   SECS=5 MTU=1420 EXTRA="--offload off" PROFILE=1 ./scripts/perf-pair.sh
# REPORT_SORT (comm,sym), REPORT_LIMIT (1 %), REPORT_LINES (30) and REPORT_ARGS (e.g.
# "--comms tokio-rt-worker") shape the profile's report; KEEP_PERF=FILE keeps perf.data;
# PERF_ARGS replaces perf record's options (default "-F 999 -e cpu-clock -a -g").
set -u
cd "$(dirname "$0")/.."
BIN=${BIN:-$PWD/target/release}
SECS=${SECS:-5}
MTU=${MTU:-1420}
EXTRA=${EXTRA:-}
[ "$(id -u)" -eq 0 ] || { echo "perf-pair: run as root" >&2; exit 1; }
[ -x "$BIN/meshd" ] || { echo "perf-pair: no $BIN/meshd: cargo build --release" >&2; exit 1; }
command -v iperf3 >/dev/null || { echo "perf-pair: install iperf3" >&2; exit 1; }
A=ppA$$ B=ppB$$ W=$(mktemp -d /tmp/perf-pair.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    sleep 0.5
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
    ip netns del "$A" 2>/dev/null; ip netns del "$B" 2>/dev/null
    rm -rf "$W"
}
trap cleanup EXIT INT TERM
head -c 32 /dev/urandom | base64 >"$W/secret"; chmod 600 "$W/secret"
ip netns add "$A"; ip netns add "$B"
ip link add vA netns "$A" type veth peer name vB netns "$B"
ip -n "$A" addr add 198.18.9.1/24 dev vA; ip -n "$B" addr add 198.18.9.2/24 dev vB
for n in "$A" "$B"; do ip -n "$n" link set lo up; done
ip -n "$A" link set vA up; ip -n "$B" link set vB up
start() { # start NS NAME IP PEER BLOCK
    # shellcheck disable=SC2086
    ip netns exec "$1" "$BIN/meshd" --name "$2" --listen "$3:6788" --peer "$4:6788" \
        --secret-file "$W/secret" --state-dir "$W/state-$2" --api-socket "$W/$2.sock" \
        --range 100.64.5.0/24 --block "$5" --mtu "$MTU" --log warn $EXTRA 2>"$W/$2.log" &
    PIDS+=($!)
}
start "$A" a 198.18.9.1 198.18.9.2 100.64.5.0/25
start "$B" b 198.18.9.2 198.18.9.1 100.64.5.128/25
for _ in $(seq 50); do ip netns exec "$A" ping -c1 -W1 100.64.5.129 >/dev/null 2>&1 && break; sleep 0.2; done
ip netns exec "$A" ping -c 50 -i 0.01 -q 100.64.5.129 | tail -n 1
ip netns exec "$B" iperf3 -s -1 >/dev/null 2>&1 &
PIDS+=($!)
sleep 0.5
if [ "${PROFILE:-0}" = 1 ]; then
    # shellcheck disable=SC2086
    perf record ${PERF_ARGS:--F 999 -e cpu-clock -a -g} -o "$W/perf.data" -- sleep $((SECS > 3 ? 3 : SECS)) >/dev/null 2>&1 &
    PERF=$!
fi
# CPU seconds (user + system) both meshds used, from /proc (clock ticks).
meshd_cpu() {
    local t=0
    for p in "${PIDS[0]}" "${PIDS[1]}"; do
        t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
    done
    echo "$t"
}
CPU0=$(meshd_cpu)
ip netns exec "$A" iperf3 -c 100.64.5.129 -t "$SECS" -J >"$W/iperf.json"
CPU1=$(meshd_cpu)
python3 - "$W/iperf.json" "$((CPU1 - CPU0))" "$(getconf CLK_TCK)" <<'PY'
import json, sys
end = json.load(open(sys.argv[1]))["end"]
sent, recv = end["sum_sent"], end["sum_received"]
cpu = int(sys.argv[2]) / int(sys.argv[3])
gb = recv["bytes"] / 1e9
print(f"throughput {recv['bits_per_second'] / 1e9:.2f} Gbit/s, {gb:.2f} GB in {recv['seconds']:.1f} s, "
      f"retransmits {sent.get('retransmits', 0)}; both meshds {cpu:.2f} CPU s = {cpu / gb:.2f} CPU s per GB")
PY
if [ -n "${PERF:-}" ]; then
    wait "$PERF"
    # shellcheck disable=SC2086
    [ -n "${KEEP_PERF:-}" ] && cp "$W/perf.data" "$KEEP_PERF"
    perf report -i "$W/perf.data" --no-children --sort ${REPORT_SORT:-comm,sym} \
        --percent-limit "${REPORT_LIMIT:-1}" --stdio -g none ${REPORT_ARGS:-} 2>/dev/null |
        grep -v '^#' | grep -v '^$' | head -"${REPORT_LINES:-30}"
fi
for h in a b; do
    echo "--- meshd $h"
    "$BIN/meshctl" --socket "$W/$h.sock" status | grep -E "datapath|DROPS|established|node drops"
done
