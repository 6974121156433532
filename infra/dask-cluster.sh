#!/usr/bin/env bash
# Start a Dask scheduler (on this host) and N worker processes that report task runs to Prefect.
#   PREFECT_API_URL=http://head:4200/api infra/dask-cluster.sh 4
# Then: refinery run --dask-address tcp://$(hostname):8786
set -euo pipefail
workers=${1:-2}
: "${PREFECT_API_URL:?set PREFECT_API_URL to the Prefect API the flows use, e.g. http://head:4200/api}"
export PREFECT_API_URL PREFECT_SERVER_ANALYTICS_ENABLED=false
# distributed keeps each connection's last 1,000 messages (every task's payload) for developers;
# 20 keeps a long-lived scheduler's memory flat, as Refinery does for its own LocalCluster
export DASK_DISTRIBUTED__ADMIN__LOW_LEVEL_LOG_LENGTH=${DASK_DISTRIBUTED__ADMIN__LOW_LEVEL_LOG_LENGTH:-20}
bin=$(dirname "$0")/../.venv/bin
"$bin/dask" scheduler --port 8786 --dashboard-address :8787 &
sleep 3
exec "$bin/dask" worker "tcp://127.0.0.1:8786" --nworkers "$workers" --nthreads 1
