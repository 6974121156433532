"""The one config model: a YAML file validated with pydantic, defaults that run the bundled corpus.

Every option is documented where it is defined (``Field(description=...)``); ``refinery config``
prints the full default file and README's configuration section is generated from the same text.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from refinery.storage.location import location
from refinery.tasks.budget.config import BudgetConfig
from refinery.tasks.dedup import DedupConfig
from refinery.tasks.evaluate.config import EvaluateConfig
from refinery.tasks.exceptions import ConfigError
from refinery.tasks.ingest.config import IngestConfig
from refinery.tasks.quality import QualityConfig
from refinery.tasks.synthesize.config import SynthesizeConfig
from refinery.tasks.train.config import TrainConfig


# The stages in chain order; a run does a prefix of them.
STAGES: tuple[str, ...] = ("ingest", "dedup", "quality", "synthesize", "train", "evaluate")
# The stages that make the curated corpus (a later run can start from them: --from-run).
CURATION_STAGES: tuple[str, ...] = STAGES[:3]


__all__ = ["CURATION_STAGES", "STAGES", "BudgetConfig", "ConfigError", "DaskConfig", "RefineryConfig", "ScheduleConfig",
           "config_reference", "dump_config", "load_config", "parse_config"]

# The nightly schedule of `refinery serve` / `refinery deploy`: 02:00, after a working day's input.
DEFAULT_CRON = "0 2 * * *"
DEFAULT_TIMEZONE = "UTC"
# A dataset's name: a folder name under <home>/datasets and a SQL string
DEFAULT_DATASET = "default"
DATASET_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class DaskConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str | None = Field(None, description="Address of an existing `distributed` scheduler "
                                "(e.g. tcp://10.0.0.5:8786); unset starts a LocalCluster.")
    n_workers: int = Field(2, ge=1, description="LocalCluster worker processes.")
    threads_per_worker: int = Field(1, ge=1, description="Threads per LocalCluster worker.")
    memory_limit: str = Field("auto", description="Memory limit per LocalCluster worker (`auto`, `4GiB`, ...).")
    worker_timeout: float = Field(30, gt=0, description="With an existing cluster: seconds to wait for a first "
                                  "worker before the run fails (every worker must also import Refinery), and, when "
                                  "every worker has left in the middle of a stage, for one to come back before the "
                                  "run fails naming the scheduler (`WorkersLostError`; `--resume` finishes it).")
    no_workers_timeout: float = Field(120, gt=0, description="With a LocalCluster: seconds without any worker (all "
                                      "died, e.g. on a task whose code no longer imports) before its waiting "
                                      "tasks fail and with them the run, instead of waiting forever.")


class ScheduleConfig(BaseModel):
    """When a served or deployed nightly flow runs (`refinery serve`, `refinery deploy`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cron: str = Field(DEFAULT_CRON, description="When the nightly flow runs, a cron expression in `timezone`; "
                      "`--cron` or `--interval` of `refinery serve`/`deploy` override it.")
    timezone: str = Field(DEFAULT_TIMEZONE, description="Time zone of `cron` (an IANA name, e.g. Europe/Berlin); "
                          "`--timezone` overrides it.")
    overlap: Literal["wait", "skip"] = Field(
        "wait", description="A run that comes due while the deployment's last run is still going: `wait` queues it "
        "until that run ends, `skip` cancels it (Prefect's deployment concurrency limit of 1, collision strategy "
        "ENQUEUE or CANCEL_NEW). Runs never overlap: they share the data home's run lock. `--overlap` overrides it.")
    alert_webhook: str | None = Field(
        None, description="Where a failed or crashed run of the deployment is reported: the name of a saved Prefect "
        "Webhook block (keeps a secret URL out of this file), or an http(s) URL (saved as the block "
        "`refinery-alert-<deployment>`). `refinery serve`/`deploy` create a Prefect automation that POSTs the run's "
        "name, state, error and a link to its report. `--alert-webhook` overrides it.")


class RefineryConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    home: str | None = Field(None, description="Data home (shards, catalog, models, reports): a local folder, or "
                             "`s3://bucket/prefix` on an S3-compatible store (AWS, MinIO, R2; credentials and "
                             "`AWS_ENDPOINT_URL` from the environment only), which then needs `catalog`. "
                             "`REFINERY_HOME` overrides it; default `./refinery-data`.")
    catalog: str | None = Field(None, description="The DuckDB catalog file, a local path; default "
                                "`<home>/catalog.duckdb`. Required when `home` is in object storage: the run lock "
                                "and the cache of derived model files live beside it.")
    dataset: str = Field(DEFAULT_DATASET, pattern=DATASET_NAME,
                         description="The dataset this run's nights add to: each night reads only what is new in its "
                         "sources, drops what duplicates a document already in the dataset, and publishes a new "
                         "version (SQL: `curated`, `dataset_versions`, `curated_at(dataset, version)`). Several "
                         "datasets may share a data home. Letters, digits, `_`, `-`, `.`.")
    stages: list[str] = Field(
        default_factory=lambda: list(STAGES),
        description="Stages this run does, a prefix of the chain (ingest, dedup, quality, synthesize, train, "
        "evaluate): `[ingest, dedup, quality]` curates only. `refinery run --stages` overrides it.")
    dask: DaskConfig = Field(default_factory=DaskConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    synthesize: SynthesizeConfig = Field(default_factory=SynthesizeConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)


    @field_validator("stages")
    @classmethod
    def _prefix_of_chain(cls, stages: list[str]) -> list[str]:
        unknown = [s for s in stages if s not in STAGES]
        if unknown:
            raise ValueError(f"unknown stage(s) {', '.join(unknown)}; the stages are {', '.join(STAGES)}")
        if not stages or list(stages) != list(STAGES[: len(stages)]):
            raise ValueError("stages must be the chain from ingest up to one stage, in order "
                             f"(e.g. ingest, dedup, quality), got {', '.join(stages) or 'none'}")
        if "quality" not in stages:
            raise ValueError("a run needs at least ingest, dedup and quality: its books are checked after quality")
        return list(stages)


def _section(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model whose keys are valid at ``loc`` (a path of keys and list positions), if any."""
    model: type[BaseModel] = RefineryConfig
    for part in loc:
        if isinstance(part, int):
            continue  # a position in a list of models: the same keys as the list's model
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        candidates = [field.annotation, *get_args(field.annotation)]  # X, X | None, list[X]
        candidates += [arg for c in candidates for arg in get_args(c)]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if model is None:
            return None
    return model


def _unknown_key(loc: tuple[int | str, ...]) -> str:
    """"unknown key", with the closest valid key and all the valid keys of its section."""
    section = _section(loc[:-1])
    if section is None:
        return "unknown key"
    valid = list(section.model_fields)
    close = difflib.get_close_matches(str(loc[-1]), valid, n=1)
    where = f"valid keys of `{'.'.join(map(str, loc[:-1]))}`" if loc[:-1] else "valid top-level keys"
    hint = f"; did you mean `{close[0]}`?" if close else ""
    return f"unknown key{hint} ({where}: {', '.join(valid)})"


def _describe(exc: ValidationError, origin: str) -> str:
    """One line per problem, each naming its key: `dedup.treshold`: unknown key; did you mean `threshold`?"""
    problems = []
    for err in exc.errors():
        key = f"`{'.'.join(str(p) for p in err['loc'])}`" if err["loc"] else "(top level)"
        if err["type"] == "extra_forbidden":
            problems.append(f"{key}: {_unknown_key(tuple(err['loc']))}")
        else:
            problems.append(f"{key}: {err['msg']} (got {err.get('input')!r})")
    if len(problems) == 1:
        return f"invalid config {origin}: {problems[0]}"
    return "\n  ".join([f"invalid config {origin}:", *problems])


def parse_config(data: dict[str, Any] | None, origin: str = "<dict>") -> RefineryConfig:
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"invalid config {origin}: the top level must be a mapping of keys")
    try:
        return RefineryConfig.model_validate(data or {})
    except ValidationError as exc:
        raise ConfigError(_describe(exc, origin)) from None


def load_config(path: str | Path | None) -> RefineryConfig:
    """Read and validate a YAML config; ``None`` gives the defaults."""
    if path is None:
        return RefineryConfig()
    path = location(path)  # a run's config.yaml in a data home in object storage too
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path} is not valid YAML: {exc}") from None
    return parse_config(data, str(path))


def dump_config(cfg: RefineryConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def _rows(model: type[BaseModel], prefix: str) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            rows += _rows(ann, key + ".")
            continue
        item = getattr(ann, "__args__", (None,))[0]
        if getattr(ann, "__origin__", None) is list and isinstance(item, type) and issubclass(item, BaseModel):
            rows.append((key, "see below", (field.description or "")))
            rows += _rows(item, key + "[].")
            continue
        default = field.get_default(call_default_factory=True)
        if isinstance(default, BaseModel):
            default = default.model_dump(mode="json")
        elif isinstance(default, list):
            default = [d.model_dump(mode="json") if isinstance(d, BaseModel) else d for d in default]
        shown = ("(required)" if field.is_required() else
                 yaml.safe_dump(default, default_flow_style=True, width=10_000).strip().removesuffix("\n..."))
        rows.append((key, shown, (field.description or "").replace("|", "\\|").replace("\n", " ")))
    return rows


def config_reference() -> str:
    """Every option as Markdown tables, one per section (README's configuration section)."""
    sections: dict[str, list[tuple[str, str, str]]] = {}
    for key, default, doc in _rows(RefineryConfig, ""):
        sections.setdefault(key.split(".")[0] if "." in key else "(top level)", []).append((key, default, doc))
    out = []
    for section, rows in sections.items():
        out.append(f"**{section}**\n\n| key | default | meaning |\n|---|---|---|")
        # a "|" in a cell would end it (descriptions are escaped by _rows)
        out += [f"| `{k}` | `{d.replace('|', chr(92) + '|')}` | {doc} |" for k, d, doc in rows]
        out.append("")
    return "\n".join(out)
