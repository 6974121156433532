"""The promotion gate and the dataset's promoted model folder.

A night's model is compared, on the evaluation's primary task, with what it would replace: the
dataset's promoted model, or the packaged base model on the dataset's first night (the paired
bootstrap interval of their nDCG@10 difference, which evaluate computed). It is promoted when
the difference is at least ``train.promotion.min_delta`` and the interval's lower bound above
``min_ci_low``; otherwise it stays a candidate, and the gate says why.

A promoted model is copied to the dataset's stable folder (``<home>/models/dataset=NAME/promoted``)
as a sentence-transformers folder with its ONNX export (``onnx/model.onnx``, fp32, and
``onnx/model_int8.onnx``, the int8 graph evaluate ranks with by default) and a model card
(``README.md``; the same facts in ``refinery_model.json``), swapped in whole.
"""

from __future__ import annotations

import json
import shutil
from typing import Any

from refinery.storage import swap_folder
from refinery.storage.location import local_copy, location, staging_dir
from refinery.tasks.evaluate.bootstrap import INTERVAL_METRIC
from refinery.tasks.train.config import PromotionConfig

PROMOTED = "promoted"
BASE = "base"
CARD_FILE = "README.md"
MODEL_FACTS_FILE = "refinery_model.json"
ONNX_FILES = {"onnx": "model.onnx", "onnx-int8": "model_int8.onnx"}


def gate(evaluation: dict[str, Any], *, compared_with: str, cfg: PromotionConfig) -> dict[str, Any]:
    """The gate's decision on the tuned model from the evaluate stage's stats: ``promote``, the task,
    the difference tuned − ``compared_with`` ('promoted' or 'base') with its interval, and ``reason``.

    The primary task is the first of evaluate's tasks whose tuned model has that interval (the
    user's first query set, else the built-in task).
    """
    name = f"{INTERVAL_METRIC}_{'vs_promoted' if compared_with == PROMOTED else 'delta'}"
    for task in evaluation.get("tasks") or []:
        tuned = ((evaluation.get("by_task") or {}).get(task, {}).get("metrics") or {}).get("tuned") or {}
        if name in tuned and f"{name}_ci_low" in tuned:
            delta, low, high = tuned[name], tuned[f"{name}_ci_low"], tuned[f"{name}_ci_high"]
            break
    else:
        return {"promote": False, "task": None, "compared_with": compared_with,
                "reason": f"no paired interval of tuned − {compared_with} {INTERVAL_METRIC} on any evaluated task "
                          "(evaluate.bootstrap_samples 0, or no task scored queries)"}
    ok_delta, ok_low = delta >= cfg.min_delta, low > cfg.min_ci_low
    figure = f"tuned − {compared_with} {INTERVAL_METRIC} on {task}: {delta:+.4f} [{low:+.4f}, {high:+.4f}]"
    if ok_delta and ok_low:
        reason = f"promoted: {figure}, ≥ {cfg.min_delta:+.4f} with the lower bound above {cfg.min_ci_low:+.4f}"
    else:
        failed = ([f"below train.promotion.min_delta {cfg.min_delta:+.4f}"] if not ok_delta else []) + (
            [f"lower bound not above train.promotion.min_ci_low {cfg.min_ci_low:+.4f}"] if not ok_low else [])
        reason = f"kept as a candidate: {figure}, " + " and ".join(failed)
    return {"promote": ok_delta and ok_low, "task": task, "compared_with": compared_with, "delta": delta,
            "ci_low": low, "ci_high": high, "reason": reason}


def publish_promoted(model_path: str, out_dir: str, facts: dict[str, Any], cache_dir: str) -> str:
    """Copy the model folder ``model_path`` to ``out_dir`` with its ONNX exports and a model card
    written from ``facts`` (see :func:`model_card`); ``out_dir``."""
    from refinery.tasks.onnx_export import onnx_model_file

    out = location(out_dir)
    tmp = staging_dir(out)
    try:
        shutil.copytree(local_copy(model_path), tmp, dirs_exist_ok=True)
        (tmp / "onnx").mkdir(exist_ok=True)
        for backend, name in ONNX_FILES.items():  # exported from the run's folder: evaluate's cache has int8
            shutil.copyfile(onnx_model_file(model_path, backend=backend, cache_dir=cache_dir), tmp / "onnx" / name)
        facts = {**facts, "folder": str(out)}
        (tmp / CARD_FILE).write_text(model_card(facts))
        (tmp / MODEL_FACTS_FILE).write_text(json.dumps(facts, indent=2, default=str))
        swap_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return str(out)


def model_card(facts: dict[str, Any]) -> str:
    """A Markdown model card: what the model is, what it was trained from and on, and how it scored."""
    train, gate_ = facts.get("train") or {}, facts.get("gate") or {}
    replay = train.get("replay") or {}
    lines = [
        f"# {facts['dataset']}: promoted embedding model",
        "",
        f"Fine-tuned by Refinery on dataset `{facts['dataset']}`, version `{facts['version']}` "
        f"(run `{facts['run_id']}`), from {facts['init']}.",
        "",
        "| | |", "|---|---|",
        f"| base model | {facts['base']} |",
        f"| trained from | {facts['init']} |",
        f"| dataset version | {facts['dataset']} @ {facts['version']} |",
        f"| training pairs | {train.get('examples')} ({replay.get('replayed', 0)} replayed from earlier nights), "
        f"{train.get('with_negatives')} with a hard negative |",
        f"| steps | {train.get('steps')} (saved step {train.get('saved_step')}) |",
        f"| loss | {facts.get('loss')} |",
        f"| teacher | {facts.get('teacher') or 'none'} |",
        f"| promotion | {gate_.get('reason')} |",
    ]
    if facts.get("fusion_weight") is not None:
        lines.append(f"| hybrid (BM25 + this model) weight | {facts['fusion_weight']} |")
    lines += ["", "## Evaluation", "", "nDCG@10 per task; intervals are paired bootstrap 95%.", "",
              "| task | model | nDCG@10 | MRR@10 | Recall@100 | − base | − bm25 | − promoted |",
              "|---|---|---|---|---|---|---|---|"]
    for task, by_model in (facts.get("metrics") or {}).items():
        for model, m in by_model.items():
            lines.append(f"| {task} | {model} | {_num(m.get('ndcg@10'))} | {_num(m.get('mrr@10'))} | "
                         f"{_num(m.get('recall@100'))} | {_interval(m, 'delta')} | {_interval(m, 'vs_bm25')} | "
                         f"{_interval(m, 'vs_promoted')} |")
    folder = facts.get("folder", "PATH/TO/THIS/FOLDER")
    lines += ["", "## Use", "", "```python", "from sentence_transformers import SentenceTransformer",
              f"folder = {folder!r}", "model = SentenceTransformer(folder)",
              "embeddings = model.encode(['a query', 'a passage'], normalize_embeddings=True)", "```", "",
              "Without PyTorch: `onnx/model.onnx` (fp32) and `onnx/model_int8.onnx` take the tokenizer's "
              "`input_ids`, `attention_mask` (and `token_type_ids`) and return `sentence_embedding`, the pooled, "
              "unit-length embedding:", "", "```python", "import onnxruntime as ort",
              "from transformers import AutoTokenizer", "tokenizer = AutoTokenizer.from_pretrained(folder)",
              "session = ort.InferenceSession(f'{folder}/onnx/model.onnx')",
              "batch = tokenizer(['a query'], padding=True, truncation=True, max_length=256, return_tensors='np')",
              "names = {i.name for i in session.get_inputs()}",
              "(embeddings,) = session.run(['sentence_embedding'], {k: v for k, v in batch.items() if k in names})",
              "```", ""]
    return "\n".join(lines)


def _num(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else ""


def _interval(m: dict[str, Any], name: str) -> str:
    key = f"{INTERVAL_METRIC}_{name}"
    if key not in m:
        return ""
    return f"{m[key]:+.4f} [{m.get(key + '_ci_low', float('nan')):+.4f}, {m.get(key + '_ci_high', float('nan')):+.4f}]"
