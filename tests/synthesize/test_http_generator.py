"""The openai generator (tasks/synthesize/generators/http.py) against a real HTTP server on the
loopback interface that speaks POST /v1/chat/completions and fails on purpose: 429, 500,
timeouts, refusals. Retries, the response cache and the API key's hygiene are checked on it; once
the server answers from the real SmolLM2, so the HTTP path yields real queries end to end.
"""

from __future__ import annotations

import json
import threading
import traceback
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from refinery.tasks.exceptions import ConfigError
from refinery.tasks.synthesize.config import FewShotExample, OpenAIConfig, SynthesizeConfig
from refinery.tasks.synthesize.generators import build_generator
from refinery.tasks.synthesize.generators.http import GenerationError, OpenAIGenerator
from tests.synthesize.chat_endpoint import FakeEndpoint

DUMMY_KEY = "sk-refinery-test-0f1e2d3c4b5a69788796a5b4c3d2e1f0"
MODEL = "test-model"
# The client's timeout in these tests (a "timeout" answer takes chat_endpoint.SLOW_S).
TIMEOUT_S = 0.5


@pytest.fixture()
def endpoint():
    with FakeEndpoint() as e:
        yield e


def generator(endpoint: FakeEndpoint, cache_dir: Path | None, **options) -> OpenAIGenerator:
    """A generator for ``endpoint``; ``options`` are keys of `synthesize.openai` or of `synthesize`."""
    settings = dict(model=MODEL, base_url=endpoint.base_url, timeout_s=TIMEOUT_S, backoff_s=0.01, max_backoff_s=0.05,
                    max_retries=3, concurrency=1, candidates_per_passage=1)
    settings.update(options)
    endpoint_keys = {k: settings.pop(k) for k in list(settings) if k in OpenAIConfig.model_fields}
    cfg = SynthesizeConfig(generators=["openai"], openai=endpoint_keys, **settings)
    return OpenAIGenerator(cfg, cache_dir=cache_dir, show_progress=False)


PASSAGES = [
    "Shares in the mining group rose sharply on Monday after it reported record copper output for the year. "
    "The company said demand from China had held up better than analysts expected.",
    "The city council has approved plans for a new tram line linking the airport with the centre. "
    "Work is due to start next spring and should take three years.",
    "A rare orchid has been found growing on a roadside verge in Kent, botanists said. "
    "The plant had not been recorded in the county for more than a century.",
]


def test_retries_429_500_and_a_timeout_then_yields_queries(endpoint, tmp_path):
    endpoint.script = ["429", "500", "timeout"]
    gen = generator(endpoint, tmp_path)
    (cands,) = gen.generate(PASSAGES[:1])

    assert [c.query for c in cands] == ["in the mining news 0"]
    assert gen.stats == {"requests": 4, "retries": 3, "cache_hits": 0}
    assert len(endpoint.requests) == 4
    # the same request each time, and what was asked for is what the candidate records
    assert all(r == endpoint.requests[0] for r in endpoint.requests)
    (cand,) = cands
    attrs = gen.attributes_for(PASSAGES[0])
    assert (cand.style, cand.attributes, cand.prompt_id) == (attrs.style, attrs.as_dict(), attrs.prompt_id)
    assert endpoint.requests[0]["model"] == MODEL and endpoint.requests[0]["stop"] == ["\n"]


def test_gives_up_after_max_retries_and_never_retries_a_refusal(endpoint, tmp_path):
    endpoint.script = ["500", "500", "500"]
    gen = generator(endpoint, tmp_path, max_retries=2)
    with pytest.raises(GenerationError, match="after 3 attempts; last: InternalServerError 500"):
        gen.generate(PASSAGES[:1])
    assert gen.stats["requests"] == 3 and gen.stats["retries"] == 2

    endpoint.script = ["400"]
    gen = generator(endpoint, tmp_path)
    with pytest.raises(GenerationError, match="refused.*BadRequestError 400"):
        gen.generate(PASSAGES[:1])
    assert gen.stats == {"requests": 1, "retries": 0, "cache_hits": 0}


def test_a_rerun_is_answered_from_the_cache(endpoint, tmp_path):
    options = dict(candidates_per_passage=3, concurrency=4, batch_size=2)
    first = generator(endpoint, tmp_path, **options).generate(PASSAGES)
    sent = len(endpoint.requests)
    assert sent == 3 * len(PASSAGES)
    assert all(len(c) == 3 for c in first)  # three samples, three distinct queries (seed + sample index)

    again = generator(endpoint, tmp_path, **options)
    assert again.generate(PASSAGES) == first
    assert len(endpoint.requests) == sent  # zero HTTP calls
    assert again.stats == {"requests": 0, "retries": 0, "cache_hits": 3 * len(PASSAGES)}
    # a sampling parameter is part of the key: other temperatures are asked for anew
    generator(endpoint, tmp_path, **options, temperature=0.3).generate(PASSAGES[:1])
    assert len(endpoint.requests) == sent + 3
    # the cache holds answers only
    stored = "".join(p.read_text() for p in tmp_path.rglob("*.json"))
    assert MODEL not in stored and "Article:" not in stored


def test_a_failed_batch_keeps_its_answers_for_the_retry(endpoint, tmp_path):
    endpoint.script = [""] * 2 + ["500"] * 2  # two answers, then the last passage fails for good
    with pytest.raises(GenerationError):
        generator(endpoint, tmp_path, max_retries=1).generate(PASSAGES)
    resumed = generator(endpoint, tmp_path)
    assert all(resumed.generate(PASSAGES))
    assert resumed.stats["cache_hits"] == 2 and resumed.stats["requests"] == 1


def test_every_sample_is_a_candidate_for_the_filters_to_judge(tmp_path):
    """Nothing the endpoint answers is dropped by the generator: short, long, copied, repeated and
    unfinished answers all come back as candidates (tidied), an unfinished one marked so."""
    answers = [("Query: mining group copper output", "stop"), ("mining group copper output.", "stop"),
               ("Copper", "stop"), (" ".join(f"word{i}" for i in range(20)), "stop"),
               ("Shares in the mining group rose sharply on Monday", "stop"), ("Steel costs hit Volvo profits", "stop"),
               ("Record copper output lifts the mining group and", "length"),  # token limit mid-sentence
               ("Mining shares rise. The group said", "length"),  # token limit after a sentence
               ("Here is a search query:", "stop")]
    with FakeEndpoint(lambda request: answers[request["seed"]]) as endpoint:
        (cands,) = generator(endpoint, tmp_path, candidates_per_passage=len(answers)).generate(PASSAGES[:1])
    assert [(c.query, c.unfinished) for c in cands] == [
        ("mining group copper output", False), ("mining group copper output", False), ("Copper", False),
        (answers[3][0], False), ("Shares in the mining group rose sharply on Monday", False),
        ("Steel costs hit Volvo profits", False), ("Record copper output lifts the mining group and", True),
        ("Mining shares rise", False), ("", False)]


def test_the_key_comes_from_the_environment_and_is_never_in_an_error(endpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("REFINERY_TEST_LLM_KEY", DUMMY_KEY)
    generator(endpoint, tmp_path, api_key_env="REFINERY_TEST_LLM_KEY").generate(PASSAGES[:1])
    assert endpoint.auth[-1] == f"Bearer {DUMMY_KEY}"

    endpoint.script = ["401"]
    with pytest.raises(GenerationError) as failure:
        generator(endpoint, None, api_key_env="REFINERY_TEST_LLM_KEY").generate(PASSAGES[1:2])
    assert "$REFINERY_TEST_LLM_KEY" in str(failure.value)
    assert DUMMY_KEY not in "".join(traceback.format_exception(failure.value))
    # no key in the environment: a server that needs none still answers
    monkeypatch.delenv("REFINERY_TEST_LLM_KEY")
    assert all(generator(endpoint, None, api_key_env="REFINERY_TEST_LLM_KEY").generate(PASSAGES[:1]))


def test_the_key_may_come_from_a_prefect_secret_block(endpoint, prefect_api):
    from prefect.blocks.system import Secret

    Secret(value=DUMMY_KEY).save("refinery-test-llm-key", overwrite=True)
    generator(endpoint, None, api_key_secret="refinery-test-llm-key").generate(PASSAGES[:1])
    assert endpoint.auth[-1] == f"Bearer {DUMMY_KEY}"


def test_built_from_the_config_with_its_few_shots_and_cache_folder(endpoint, tmp_path):
    shot = FewShotExample(passage="The village fete was cancelled because of rain.", query="rain cancels fete",
                          style="keywords", specificity="specific")
    cfg = SynthesizeConfig(generators=["openai"], styles=["keywords"], few_shot=[shot], candidates_per_passage=1,
                           openai={"model": MODEL, "base_url": endpoint.base_url, "max_retries": 0})
    gen = build_generator("openai", cfg, cache_dir=tmp_path, show_progress=False)
    assert all(gen.generate(PASSAGES[:1]))
    messages = endpoint.requests[-1]["messages"]
    assert [m["content"] for m in messages if m["role"] == "assistant"] == ["rain cancels fete"]
    assert "The village fete was cancelled because of rain." in messages[1]["content"]
    assert list((tmp_path / "openai").rglob("*.json"))
    with pytest.raises(ValueError, match="synthesize.openai.model"):
        SynthesizeConfig(generators=["openai"])
    with pytest.raises(ConfigError, match="synthesize.openai.model"):  # a config that never asked for it
        OpenAIGenerator(SynthesizeConfig())


# ----------------------------------------------------------------------------- real SmolLM2 behind HTTP


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    from refinery.tasks.synthesize.generators import load_local_model

    return load_local_model(cache_dir=tmp_path_factory.mktemp("smollm2"))


def smollm2_answer(tokenizer, model) -> Callable[[dict], tuple[str, str]]:
    """Chat completions as a server would compute them: the chat template, then sampling."""
    import torch

    lock = threading.Lock()

    def answer(request: dict) -> tuple[str, str]:
        text = tokenizer.apply_chat_template(request["messages"], tokenize=False, add_generation_prompt=True)
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        with lock, torch.inference_mode():
            torch.manual_seed(request["seed"])
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True,
                                 temperature=request["temperature"], top_p=request["top_p"],
                                 max_new_tokens=request["max_tokens"], stop_strings=request["stop"],
                                 tokenizer=tokenizer, pad_token_id=tokenizer.pad_token_id)
        new = out[0, ids.shape[1]:]
        content = tokenizer.decode(new, skip_special_tokens=True)
        ended = bool((new == tokenizer.eos_token_id).any()) or "\n" in content
        return content.split("\n")[0], "stop" if ended else "length"

    return answer


@pytest.mark.slow
def test_the_http_path_yields_real_queries_from_smollm2(smollm2, tmp_path):
    with FakeEndpoint(smollm2_answer(*smollm2)) as endpoint:
        gen = generator(endpoint, tmp_path, candidates_per_passage=3, concurrency=2, max_new_tokens=20,
                        timeout_s=120)
        results = gen.generate(PASSAGES[:2])
    assert len(endpoint.requests) == 6
    assert [len(cands) for cands in results] == [3, 3]  # every sample is a candidate; the filters judge them
    for cands in results:
        for c in cands:
            assert "\n" not in c.query and c.query == c.query.strip()
            assert c.style in ("question", "keywords", "claim", "title")
    assert any(c.query and not c.unfinished for cands in results for c in cands), "no answer with a query"


# ----------------------------------------------------------------------------- a whole run


def _scan(root: Path, needle: str, since: float = 0.0) -> list[str]:
    """Files under ``root`` (modified after ``since``) that contain ``needle``."""
    return [str(p) for p in root.rglob("*")
            if p.is_file() and p.stat().st_mtime >= since and needle.encode() in p.read_bytes()]


def _everything(api: str, kind: str) -> list[dict]:
    """Every object of ``kind`` (flow_runs, task_runs, logs, artifacts) the Prefect API holds."""
    import httpx

    rows, offset = [], 0
    while batch := httpx.post(f"{api}/{kind}/filter", json={"limit": 200, "offset": offset}).json():
        rows += batch
        offset += len(batch)
    return rows


@pytest.mark.slow  # the chain up to synthesize on a Dask cluster of its own: minutes on 2 cores
def test_a_run_with_the_http_generator_never_stores_the_key(tmp_path, prefect_api, monkeypatch):
    """A run to the synthesize stage with the openai generator and a dummy key in the environment:
    the key reaches the server, and no file of the data home, catalog row, report, log or Prefect
    artifact holds it."""
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH

    from refinery.flows.nightly import nightly
    from refinery.storage import Catalog

    monkeypatch.setenv("REFINERY_TEST_LLM_KEY", DUMMY_KEY)
    started = time.time()
    with FakeEndpoint() as endpoint:
        home = tmp_path / "home"
        config = {
            "home": str(home),
            "stages": ["ingest", "dedup", "quality", "synthesize"],
            "ingest": {"limit": 24, "sources": [{"path": "builtin:bbc"}]},
            "synthesize": {"generators": ["openai", "inverse_cloze"], "passages": 8, "inverse_cloze_passages": 8,
                           "candidates_per_passage": 2,
                           "filter_pool_docs": 24,
                           "openai": {"model": MODEL, "base_url": endpoint.base_url,
                                      "api_key_env": "REFINERY_TEST_LLM_KEY", "max_retries": 2, "backoff_s": 0.01}},
            "evaluate": {"encoder": "torch"},
            # a cluster of this run's own, so its worker inherits the key from this environment
            "dask": {"n_workers": 1},
        }
        endpoint.script = ["429", "500"]
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        stats = nightly(config_path=str(path))
    run_id = stats["run_id"]
    assert endpoint.auth and set(endpoint.auth) == {f"Bearer {DUMMY_KEY}"}
    assert len(endpoint.requests) == 8 * 2 + 2  # every sample, and the two retried faults

    catalog = Catalog(home / "catalog.duckdb")
    rows = catalog.query("SELECT generator, style, attributes FROM pairs WHERE run_id = ?", [run_id]).to_pylist()
    assert {r["generator"] for r in rows} == {"openai", "inverse_cloze"}
    llm = [r for r in rows if r["generator"] == "openai"]
    assert all(r["style"] in ("question", "keywords", "claim", "title") for r in llm)
    assert all(set(json.loads(r["attributes"])) == {"length", "specificity"} for r in llm)
    assert {(r["style"], r["attributes"]) for r in rows if r["generator"] == "inverse_cloze"} == {("sentence", None)}
    (stored,) = catalog.query("SELECT config FROM runs WHERE run_id = ?", [run_id]).to_pylist()
    assert "REFINERY_TEST_LLM_KEY" in stored["config"]  # the name is configuration, the key is not

    assert _scan(home, DUMMY_KEY) == []
    assert _scan(home, DUMMY_KEY[-12:]) == []
    tables = [r["table_name"] for r in catalog.query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'").to_pylist()]
    for table in tables:
        dump = catalog.query(f"SELECT * FROM {table}").to_pylist()
        assert DUMMY_KEY not in json.dumps(dump, default=str), table
    assert DUMMY_KEY not in Path(stats["report"]).read_text()
    for kind in ("flow_runs", "task_runs", "logs", "artifacts"):
        rows = _everything(prefect_api, kind)
        assert rows and DUMMY_KEY not in json.dumps(rows), kind
    # results Prefect persisted, if any
    storage = Path(PREFECT_LOCAL_STORAGE_PATH.value())
    assert not storage.exists() or _scan(storage, DUMMY_KEY, since=started) == []
