#!/usr/bin/env bash
# Start a Dask scheduler (on this host) and N worker processes that report task runs to Prefect.
#   PREFECT_API_URL=http://head:4200/api infra/dask-cluster.sh 4
# Then: refinery run --dask-address tcp://$(hostname):8786
set -euo pipefail
workers=${1:-2}
: "${PREFECT_API_URL:?set PREFECT_API_URL to the Prefect API the flows use, e.g. http://head:4200/api}"
export PREFECT_API_URL PREFECT_SERVER_ANALYTICS_ENABLED=false
bin=$(dirname "$0")/../.venv/bin
"$bin/dask" scheduler --port 8786 --dashboard-address :8787 &
sleep 3
exec "$bin/dask" worker "tcp://127.0.0.1:8786" --nworkers "$workers" --nthreads 1
