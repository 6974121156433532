"""infra/ for a team: the compose file, the Dockerfile and the Helm values for Prefect's and Dask's
charts. Nothing here can run containers, so the test reads them as their tools would (YAML) and
checks what breaks a deployment silently: an image that is not the locked version, a port or address
that one service publishes and another expects elsewhere, an install that is not the locked one, a
config the image's Refinery would refuse, and docs that name other ports than the files."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from refinery.tasks.config import load_config

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"


def locked(package: str) -> str:
    (version,) = re.findall(rf"^{re.escape(package)}==([^\s\\]+)", (ROOT / "requirements.lock").read_text(), re.M)
    return version


def python_minor() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((INFRA / "compose.yaml").read_text())


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    return env if isinstance(env, dict) else dict(item.split("=", 1) for item in env)


def published(service: dict) -> dict[int, int]:
    """container port -> host port."""
    out = {}
    for item in service.get("ports") or []:
        host, container = str(item).rsplit(":", 1) if ":" in str(item) else (item, item)
        out[int(container)] = int(host)
    return out


def test_the_prefect_server_is_the_locked_prefect_on_postgresql(compose):
    services = compose["services"]
    server = services["prefect-server"]
    assert server["image"] == f"prefecthq/prefect:{locked('prefect')}-python{python_minor()}"
    assert published(server) == {4200: 4200}
    assert "--port 4200" in server["command"] and "--host 0.0.0.0" in server["command"]
    # its database URL names the postgres service with the user and database that service creates
    url = urlsplit(env_of(server)["PREFECT_API_DATABASE_CONNECTION_URL"])
    pg = env_of(services["postgres"])
    assert url.scheme == "postgresql+asyncpg" and url.hostname == "postgres" and url.port == 5432
    assert url.username == pg["POSTGRES_USER"] and url.path == f"/{pg['POSTGRES_DB']}"
    # the same password: the variable the postgres service requires
    assert url.password == "${PREFECT_DB_PASSWORD}" and pg["POSTGRES_PASSWORD"].startswith("${PREFECT_DB_PASSWORD:?")
    assert env_of(server)["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert env_of(server)["PREFECT_UI_API_URL"].endswith("/api")
    assert services["postgres"]["image"].startswith("postgres:")


def test_every_refinery_process_runs_the_refinery_image_and_finds_the_others(compose):
    services = compose["services"]
    refinery = {name: s for name, s in services.items() if s.get("image") == "refinery:latest"}
    assert set(refinery) == {"dask-scheduler", "dask-worker", "prefect-worker", "deploy"}
    for name, service in refinery.items():
        assert service["build"]["dockerfile"] == "infra/Dockerfile", name
        assert (INFRA / service["build"]["context"] / service["build"]["dockerfile"]).exists()
        # the one data home every worker sees
        assert "refinery-data:/data" in service["volumes"], name
    scheduler_port = int(re.search(r"--port (\d+)", services["dask-scheduler"]["command"]).group(1))
    assert scheduler_port in published(services["dask-scheduler"])
    assert f"tcp://dask-scheduler:{scheduler_port}" in services["dask-worker"]["command"]
    assert f"--dask-address tcp://dask-scheduler:{scheduler_port}" in services["deploy"]["command"]
    # workers and flow runs report to the server's API at the port it listens on
    api = f"http://prefect-server:{next(iter(published(services['prefect-server'])))}/api"
    for name in ("dask-worker", "prefect-worker", "deploy"):
        assert env_of(services[name])["PREFECT_API_URL"] == api, name
    # the worker polls the pool `deploy` registers the deployment on
    pool = re.search(r"--pool (\S+)", services["prefect-worker"]["command"]).group(1)
    assert f"--pool {pool}" in services["deploy"]["command"]
    # the deployment's config is under the folder a UI-started run may read configs from
    config = re.search(r"--config (\S+)", services["deploy"]["command"]).group(1)
    assert Path(config).parent == Path(env_of(services["prefect-worker"])["REFINERY_CONFIG_DIR"])


def test_the_image_installs_exactly_the_lock_as_make_install_does():
    dockerfile = (INFRA / "Dockerfile").read_text()
    assert re.search(rf"^FROM python:{re.escape(python_minor())}-slim$", dockerfile, re.M)
    install = " ".join(dockerfile.split("\\\n"))
    assert re.search(r"pip install [^\n]*--require-hashes --no-deps [^\n]*-r requirements\.lock -r requirements-nodeps\.lock",
                     install)
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes --no-deps -r requirements.lock -r requirements-nodeps.lock" in makefile
    # every folder the package is built from is copied into the image
    for folder in ("flows", "tasks", "storage"):
        assert f"COPY {folder} {folder}" in dockerfile
    assert "DASK_DISTRIBUTED__ADMIN__LOW_LEVEL_LOG_LENGTH=20" in dockerfile


def test_the_example_config_keeps_its_home_in_minio_and_its_catalog_on_the_volume(compose):
    cfg = load_config(INFRA / "config" / "refinery.example.yaml")
    assert cfg.home.startswith("s3://") and cfg.catalog.startswith("/data/")
    assert all(src.path.startswith("/data/") for src in cfg.ingest.sources)  # files every worker reads
    mount = next(v for v in compose["services"]["prefect-worker"]["volumes"] if v.endswith(":/config:ro"))
    assert (INFRA / mount.split(":")[0] / "refinery.example.yaml").exists()


def test_every_refinery_process_reaches_minio_with_its_root_credentials(compose):
    services = compose["services"]
    minio = services["minio"]
    port = int(re.search(r"--address :(\d+)", minio["command"]).group(1))
    assert port in published(minio) and "--console-address :9001" in minio["command"]
    for name in ("dask-worker", "prefect-worker", "deploy"):  # whoever reads or writes the home
        env = env_of(services[name])
        assert env["AWS_ENDPOINT_URL"] == f"http://minio:{port}", name
        assert env["AWS_ACCESS_KEY_ID"] == env_of(minio)["MINIO_ROOT_USER"], name
        assert env["AWS_SECRET_ACCESS_KEY"] == env_of(minio)["MINIO_ROOT_PASSWORD"], name


def test_the_helm_values_agree_with_the_lock_and_with_each_other():
    server = yaml.safe_load((INFRA / "k8s" / "prefect-server.values.yaml").read_text())
    worker = yaml.safe_load((INFRA / "k8s" / "prefect-worker.values.yaml").read_text())
    dask = yaml.safe_load((INFRA / "k8s" / "dask.values.yaml").read_text())
    data = list(yaml.safe_load_all((INFRA / "k8s" / "refinery-data.yaml").read_text()))
    assert server["global"]["prefect"]["image"]["prefectTag"] == f"{locked('prefect')}-python{python_minor()}"
    assert server["postgresql"]["enabled"] and server["postgresql"]["primary"]["persistence"]["enabled"]
    port = server["service"]["port"]
    api = f"http://prefect-server.refinery.svc.cluster.local:{port}/api"  # service prefect-server, namespace refinery
    assert worker["worker"]["selfHostedServerApiConfig"]["apiUrl"] == api
    assert worker["worker"]["apiConfig"] == "selfHostedServer" and worker["worker"]["config"]["type"] == "process"
    assert {e["name"]: e["value"] for e in dask["worker"]["env"]}["PREFECT_API_URL"] == api
    # one image for the flow runs and every Dask process, with the one data home mounted at /data
    image = worker["worker"]["image"]["repository"]
    assert dask["scheduler"]["image"]["repository"] == dask["worker"]["image"]["repository"] == image
    (claim,) = [d for d in data if d and d["kind"] == "PersistentVolumeClaim"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    worker_claims = [v["persistentVolumeClaim"]["claimName"] for v in worker["worker"]["extraVolumes"]
                     if "persistentVolumeClaim" in v]
    dask_claims = [v["persistentVolumeClaim"]["claimName"] for v in dask["worker"]["mounts"]["volumes"]]
    assert worker_claims == dask_claims == [claim["metadata"]["name"]]
    assert {"name": "data", "mountPath": "/data"} in worker["worker"]["extraVolumeMounts"]
    assert {"name": "data", "mountPath": "/data"} in dask["worker"]["mounts"]["volumeMounts"]
    assert dask["scheduler"]["servicePort"] == 8786 and not dask["jupyter"]["enabled"]


def test_the_docs_name_the_ports_and_files_infra_uses(compose):
    readme = (INFRA / "README.md").read_text()
    for name in ("compose.yaml", "Dockerfile", "k8s/prefect-server.values.yaml", "k8s/prefect-worker.values.yaml",
                 "k8s/dask.values.yaml", "k8s/refinery-data.yaml"):
        assert name in readme, name
        assert (INFRA / name).exists(), name
    services = compose["services"]
    for service, port in (("prefect-server", 4200), ("dask-scheduler", 8786), ("dask-scheduler", 8787),
                          ("minio", 9000), ("minio", 9001)):
        assert port in published(services[service])
        assert f":{port}" in readme, port
    operations = (ROOT / "docs" / "operations.md").read_text()
    assert "127.0.0.1:4200" in operations and "--port 8786" in operations
