"""Encoder comparison: a linear probe of the caption vectors (probe.py), and one fixed-budget GAN run per arm, evaluated.

    from tools.evaluation.compare import Arm, Plan, run_comparison
    state = run_comparison([Arm("minilm", "minilm"), Arm("tfidf", "tfidf")], Plan(dataset, Path("runs/cmp"),
                           train={"minutes": 30}))
    state["arms"]["tfidf"]["metrics"]["attribute_accuracy"]["mean"]

An arm is an encoder spec plus GAN options of its own (`Arm("ta80", "minilm", {"arch": "ta80"})`); every arm
shares the plan's budget and seed. State lives in OUT/comparison.json, written after each stage: a re-run reuses
a finished run whose options match (OUT/runs/ is searched too) and metrics measured with the same settings.
Users of this module: tools/compare_encoders.py (tables, chart) and bench/quality.py. They pass the training
function (Plan.train_run = gan.loop.train_run): this module imports no training code.
"""
from __future__ import annotations

import dataclasses
import json
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from tools.errors import UserError
from tools.evaluation.probe import PROBE_IMAGES, PROBE_ITERATIONS, PROBE_L2, probe_attributes, read_attributes

STATE = "comparison.json"
# options that change neither the trained weights nor the budget: a run differing only here is reused (ca_noise
# changes how images are drawn, so the evaluation draws them with the wanted value, whatever the run recorded)
COSMETIC = ("embeddings", "run_dir", "log_every", "sample_every", "ckpt_every", "keep_checkpoints",
            "num_sample_captions", "num_sample_z", "ca_noise")


# --- runs -------------------------------------------------------------------------------------------------------
@dataclass
class Arm:
    name: str  # label in tables and comparison.json, e.g. "minilm", "ta80"
    spec: str  # encoder spec of the cache its run trains on
    overrides: dict = field(default_factory=dict)  # GAN options of this arm only, e.g. {"arch": "ta80"}
    probe: bool = True  # run the linear probe (meaningless for an arch that trains its own text encoder: ta80)
    # build_cache options of its cache, e.g. {"tokens": "auto"}: also the token states (its own file, cache_path)
    cache_options: dict = field(default_factory=dict)


@dataclass
class Plan:
    dataset: object  # tools.dataset.CaptionDataset
    out: Path  # comparison.json here, new runs in OUT/runs/
    train: dict = field(default_factory=dict)  # GAN options every arm shares: the budget (steps/minutes), seed, ...
    n_per_caption: int = 2  # evaluation noise samples per test caption
    seed: int = 0  # probe split and evaluation noise
    cache_dir: Path | None = None  # embedding caches (default cache/)
    runs: dict = field(default_factory=dict)  # arm name -> a finished run folder to use instead of training
    probe_images: int = PROBE_IMAGES
    train_run: Callable | None = None  # GanConfig -> run folder: gan.loop.train_run (None: only reuse finished runs)


def want_config(cache_path: Path, train: dict, arm: Arm, run_parent: Path):
    """The GanConfig a new run of this arm would have (cache section filled from the cache)."""
    import tensorflow as tf

    from gan.config import resolve
    from gan.data import read_cache

    cfg = resolve({**train, **arm.overrides, "embeddings": str(cache_path), "run_dir": str(run_parent)},
                  gpu_available=bool(tf.config.list_physical_devices("GPU")))
    return dataclasses.replace(cfg, cache=read_cache(cache_path, need_vectors=False).info)


def config_mismatch(run_dir: Path, want) -> str | None:
    """Why the run at run_dir cannot stand for `want` (other options, other cache, unfinished), or None."""
    from gan.run_dir import load_config

    have = load_config(run_dir)
    diffs = [f"{k} {getattr(have, k)!r} (want {getattr(want, k)!r})" for k in have.option_names()
             if k not in COSMETIC and getattr(have, k) != getattr(want, k)]
    if have.cache.fingerprint != want.cache.fingerprint:
        diffs.append(f"cache fingerprint {have.cache.fingerprint[:12]} (want {want.cache.fingerprint[:12]})")
    if not diffs and run_speed(run_dir)["steps"] is None:
        diffs.append("training did not finish (no 'done:' line in train.log)")
    return "; ".join(diffs) or None


def run_speed(run_dir: Path) -> dict:
    """{"steps": steps when training finished (None: unfinished), "ms_per_step": median of the logged
    intervals after the first (which includes tracing)} from RUN/train.log."""
    log = Path(run_dir) / "train.log"
    text = log.read_text(encoding="utf-8") if log.is_file() else ""
    ms = [float(m) for m in re.findall(r"^step \d+.*\| (\d+(?:\.\d+)?) ms/step", text, re.M)]
    done = re.findall(r"^done: step (\d+)", text, re.M)
    return {"steps": int(done[-1]) if done else None,
            "ms_per_step": statistics.median(ms[1:] if len(ms) > 1 else ms) if ms else None}


def find_run(arm: Arm, want, plan: Plan, entry: dict, log) -> Path | None:
    """A finished run that matches `want`: the user's (must match), the state's, else the newest in OUT/runs."""
    if arm.name in plan.runs:
        given = Path(plan.runs[arm.name])
        why = config_mismatch(given, want)
        if why:
            raise UserError(f"--runs {arm.name}={given}: does not match this comparison: {why}")
        return given
    candidates = [Path(entry["run_dir"])] if entry.get("run_dir") else []
    parent = plan.out / "runs"
    if parent.is_dir():
        candidates += sorted((p for p in parent.iterdir() if (p / "config.json").is_file()), reverse=True)
    for run in candidates:
        if run.is_dir() and config_mismatch(run, want) is None:
            return run
    if entry.get("run_dir"):
        log(f"recorded run {entry['run_dir']} no longer matches or is gone: training a new one")
    return None


def _pairs_key() -> str | None:
    """What the binding rows of tools/evaluate.py --run were measured on (None: no swap-pair file)."""
    from tools.evaluation.binding import DEFAULT_PAIRS, pairs_key

    return pairs_key(DEFAULT_PAIRS) if DEFAULT_PAIRS.is_file() else None


def checkpoint_step(run_dir: Path) -> int:
    from gan.run_dir import find_checkpoint

    return int(find_checkpoint(run_dir).rsplit("-", 1)[-1])


def evaluate_run(run_dir: Path, n_per_caption: int, seed: int, captions: Path | None, ca_noise: float) -> dict:
    """tools/evaluate.py --run RUN (generate for the test captions with CA noise `ca_noise`, evaluate); returns
    RUN/metrics.json."""
    from tools.evaluate import main as evaluate_main

    argv = ["--run", str(run_dir), "--n-per-caption", str(n_per_caption), "--seed", str(seed),
            "--ca-noise", str(ca_noise)]
    evaluate_main(argv + (["--captions", str(captions)] if captions else []))
    return json.loads((Path(run_dir) / "metrics.json").read_text(encoding="utf-8"))


def eval_captions(plan: Plan, limit: int = 819) -> Path | None:
    """None when the dataset has held-out test captions (evaluate uses them); else OUT/eval_captions.jsonl with the
    first caption of `limit` seeded images (training captions: the scores measure fit, not generalisation)."""
    ds = plan.dataset
    if ds.test_captions:
        return None
    first: dict[int, int] = {}
    for row, image in enumerate(ds.caption_image.tolist()):
        first.setdefault(image, row)
    images = np.random.default_rng(plan.seed).permutation(sorted(first))[:limit]
    path = plan.out / "eval_captions.jsonl"
    path.write_text("".join(json.dumps({"id": k + 1, "caption": ds.captions[first[int(i)]]}) + "\n"
                            for k, i in enumerate(images)), encoding="utf-8")
    return path


# --- the comparison ---------------------------------------------------------------------------------------------
def load_state(out: Path) -> dict:
    path = out / STATE
    try:
        state = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except json.JSONDecodeError:
        state = {}  # a damaged record: everything is re-checked from the run folders anyway
    state.setdefault("arms", {})
    return state


def save_state(out: Path, state: dict) -> None:
    tmp = out / (STATE + ".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    tmp.replace(out / STATE)


def dataset_root(dataset) -> Path:
    root = Path(dataset.root)
    return root if root.is_dir() else root.parent


def run_comparison(arms: list[Arm], plan: Plan, log=print) -> dict:
    """Cache, probe, train (or reuse), evaluate each arm in turn; OUT/comparison.json after every stage."""
    if len({a.name for a in arms}) != len(arms):
        raise UserError(f"arm names must differ: {', '.join(a.name for a in arms)}")
    plan.out.mkdir(parents=True, exist_ok=True)
    attributes = read_attributes(dataset_root(plan.dataset))
    state = load_state(plan.out)
    state.update(dataset={"name": plan.dataset.name, "root": str(dataset_root(plan.dataset).resolve()),
                          "synthetic": attributes is not None, "num_images": plan.dataset.num_images,
                          "num_captions": plan.dataset.num_captions},
                 train=plan.train, evaluation={"n_per_caption": plan.n_per_caption, "seed": plan.seed},
                 order=[a.name for a in arms])
    captions = eval_captions(plan)
    state["evaluation"]["captions"] = str(captions) if captions else "the dataset's held-out test captions"
    for i, arm in enumerate(arms, 1):
        entry = state["arms"].setdefault(arm.name, {})
        entry.update(spec=arm.spec, overrides=arm.overrides, cache_options=arm.cache_options)
        _run_arm(arm, plan, entry, attributes, captions, lambda msg: log(f"[{i}/{len(arms)} {arm.name}] {msg}"),
                 lambda: save_state(plan.out, state))
    return state


def _run_arm(arm: Arm, plan: Plan, entry: dict, attributes, captions, say, save) -> None:
    from gan.run_dir import TrainingDiverged

    want = cache_stage(arm, plan, entry, say)
    save()
    if attributes is None or not arm.probe:
        entry["probe"] = None
    else:
        _probe_stage(plan, entry, attributes, say)
    save()
    entry.pop("error", None)
    run = find_run(arm, want, plan, entry, say)
    if run is None:
        if plan.train_run is None:
            raise UserError(f"arm {arm.name}: no finished run matches and the plan trains none (Plan.train_run)")
        say(f"train: new run in {plan.out / 'runs'} ({_budget(want)})")
        try:
            run = plan.train_run(want)
        except TrainingDiverged as e:  # the other arms still run; a re-run retries this one
            entry.update(error=f"training diverged: {e}", run_dir=None, metrics=None)
            save()
            say(f"skipped: {entry['error']}")
            return
    else:
        say(f"train: reusing finished run {run} ({_budget(want)})")
    run = run.resolve()
    entry.update(run_dir=str(run), **run_speed(run))
    save()
    from tools.evaluation.report import METRICS_VERSION, without_scores

    key = {"run_dir": str(run), "step": checkpoint_step(run), "n_per_caption": plan.n_per_caption,
           "seed": plan.seed, "captions": str(captions) if captions else None, "metrics_version": METRICS_VERSION,
           "ca_noise": want.ca_noise, "swap_pairs": _pairs_key()}
    if entry.get("eval") == key and entry.get("metrics"):
        say(f"evaluate: reused metrics of step {key['step']}")
    else:
        say(f"evaluate: step {key['step']}, {plan.n_per_caption} samples per caption ...")
        # the state is what a results file copies: the per-image R-precision scores stay in RUN/metrics.json
        metrics = evaluate_run(run, plan.n_per_caption, plan.seed, captions, want.ca_noise)
        entry["metrics"], entry["eval"] = without_scores(metrics), key
    save()
    say(f"done: {summary_line(entry, attributes is not None)}")


def cache_stage(arm: Arm, plan: Plan, entry: dict, say):
    """Build or reuse the arm's embedding cache; returns the GanConfig a new run of this arm would have."""
    from cache.paths import DEFAULT_CACHE_DIR
    from cache.writer import build_cache
    from embeddings.registry import get_encoder

    say(f"cache: encoder {arm.spec}" + (f" {arm.cache_options}" if arm.cache_options else ""))
    target = cache_path(arm, plan.dataset.name, plan.cache_dir or DEFAULT_CACHE_DIR)
    cache = build_cache(plan.dataset, get_encoder(arm.spec), target, log=say, **arm.cache_options)
    want = want_config(cache, plan.train, arm, plan.out / "runs")
    entry.update(cache=str(cache), dim=want.cache.dim, fingerprint=want.cache.fingerprint)
    return want


def cache_path(arm: Arm, dataset_name: str, directory) -> Path:
    """The arm's cache file: cache/<dataset>-<encoder>.h5, or -tokens.h5 for a token-level cache (a cache built
    with other options is refused, never reused: the two kinds need two files)."""
    from cache.paths import default_cache_path

    target = default_cache_path(dataset_name, arm.spec, directory)
    return target.with_name(target.stem + "-tokens.h5") if arm.cache_options.get("tokens") else target


def _probe_stage(plan: Plan, entry: dict, attributes: dict, say) -> None:
    settings = {"seed": plan.seed, "max_images": plan.probe_images, "iterations": PROBE_ITERATIONS, "l2": PROBE_L2}
    old = entry.get("probe") or {}
    if old.get("settings") == settings and old.get("fingerprint") == entry["fingerprint"]:
        say(f"probe: reused (mean accuracy {_fmt(old['mean'])})")
        return
    n = min(plan.probe_images, plan.dataset.num_images)
    say(f"probe: softmax regression per attribute on the caption vectors of {n} images ...")
    probe = probe_attributes(entry["cache"], attributes, seed=plan.seed, max_images=plan.probe_images)
    entry["probe"] = {**probe, "fingerprint": entry["fingerprint"]}
    say("probe: " + " | ".join(f"{k} {_fmt(v['accuracy'])}" for k, v in probe.items()
                               if isinstance(v, dict) and "accuracy" in v) + f" | mean {_fmt(probe['mean'])}")


def _budget(cfg) -> str:
    parts = [f"{cfg.steps} steps" if cfg.steps else "", f"{cfg.epochs:g} epochs" if cfg.epochs else "",
             f"{cfg.minutes:g} min" if cfg.minutes else ""]
    return " / ".join(p for p in parts if p) + f", seed {cfg.seed}, arch {cfg.arch}"


def _fmt(v, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


# --- numbers for tables ---------------------------------------------------------------------------------------------
# decimals a table prints per metric_rows label (others: 3)
METRIC_DIGITS = {"FID": 2, "IS": 1, "diversity": 2, "ms/step": 0, "CA noise at sampling": 1}


def metric_rows(entry: dict, synthetic: bool) -> list[tuple[str, float | None, float | None]]:
    """(label, value, real reference) of one arm, in table order; attribute rows only for synthetic sets."""
    from tools.evaluation.real_data import ATTRIBUTES

    m = entry.get("metrics") or {}
    rows = []
    if synthetic:
        acc, ceiling = m.get("attribute_accuracy") or {}, m.get("attribute_ceiling") or {}
        rows += [(f"{a} accuracy", (acc.get(a) or {}).get("accuracy"), ceiling.get(a)) for a in ATTRIBUTES]
        rows.append(("mean attribute accuracy", acc.get("mean"), _mean(ceiling.get(a) for a in ATTRIBUTES)))
        rows += _binding_rows(m.get("binding"))
    rp, shared, div = m.get("r_precision") or {}, m.get("r_precision_shared") or {}, m.get("diversity") or {}
    rows += [("FID", m.get("fid"), m.get("fid_floor")), ("IS", m.get("is"), m.get("is_real")),
             # one judge per dataset: its real-image score is the reference of every arm
             ("R-precision, shared judge", shared.get("value"), shared.get("real")),
             # one matcher per cache: its real-image score is a row of its own, not one reference
             ("R-precision, cache matcher", rp.get("value"), None),
             ("R-precision of real images, cache matcher", rp.get("real"), None),
             ("diversity", div.get("feature"), div.get("feature_real")),
             ("steps reached", entry.get("steps"), None), ("ms/step", entry.get("ms_per_step"), None),
             # how the images were drawn: c = μ + s·σ·ε(z) (gan.conditioning.sampling_eps; 0 for ta80, which has no CA)
             ("CA noise at sampling", (m.get("sampling") or {}).get("ca_noise"), None)]
    return rows


def _binding_rows(binding: dict | None) -> list[tuple[str, float | None, float | None]]:
    """The swap-pair rows (tools/evaluation/binding.py); "-" for metrics measured before them."""
    from tools.evaluation.binding import table_rows

    if binding:
        return table_rows(binding)
    empty = {"n_pairs": 0, "n_held_out": 0, "accuracy": None, "pair_accuracy": None, "petal_color": None,
             "center_color": None, "held_out": None, "swapped": None, "alike": None, "petal_first": None,
             "centre_first": None}
    return table_rows(empty)


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def summary_line(entry: dict, synthetic: bool) -> str:
    rows = {label: value for label, value, _ in metric_rows(entry, synthetic)}
    mean = "mean attribute accuracy"
    parts = [f"{mean} {_fmt(rows[mean])}"] if mean in rows else []
    return " | ".join(parts + [f"FID {_fmt(rows['FID'], 2)}", f"IS {_fmt(rows['IS'], 1)}",
                               f"R-precision {_fmt(rows['R-precision, shared judge'])}", f"{entry.get('steps')} steps"])
