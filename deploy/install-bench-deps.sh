#!/usr/bin/env bash
# Installs what `make bench` needs beyond deploy/install-deps.sh (which brings nginx, curl,
# jq, ffmpeg and /usr/bin/time):
#   - wrk (Debian 12's 4.1.0): the HTTP load generator of benches/origin.sh;
#   - linux-perf: the profiler of benches/profile.sh.
# Idempotent: it only calls apt when a package is missing.
set -euo pipefail

PKGS=(wrk linux-perf)

bash "$(dirname "${BASH_SOURCE[0]}")/apt-ensure.sh" install-bench-deps "${PKGS[@]}"
