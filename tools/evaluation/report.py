"""Every metric for a set of generated images and their captions: one dict, one printed table.

    metrics = evaluate_images(images_by_id, captions, "data/synthetic-flowers", cache_path="cache/sf-minilm.h5")
    print(format_table(metrics))

Each number comes with its real-data reference: attribute accuracy with the classifier's held-out accuracy
(the ceiling), FID with the FID between two disjoint real sets of the same size (the floor), IS and
R-precision with the same metric on real images, diversity with real images that fit the same caption.

Choices: FID in the attribute classifier's 128-d penultimate features; IS over the 224 joint attribute
classes (product of the four heads), so IS is 224 for confident, evenly spread combinations and 1 for a
collapsed generator, and never exceeds the number of images. Measured with real renders standing in for a
perfect generator (819 test captions x 2, synthetic set seed 0, tfidf cache): attribute accuracy 1.000,
FID 5.0 vs floor 2.0 (K samples of one caption are not i.i.d.; with 819 images the floor itself varies
between 4.3 and 7.3 over real subsets, so only larger gaps mean anything), IS 189 vs 194, R-precision 0.46
vs 0.44, feature diversity 22.6 vs 22.8. Ignoring the text: accuracy 0.15-0.50 (chance), R-precision 0.01;
a constant grey image: FID 2147, IS 1.0.

The real reference is the synthetic set's own labelled images (a --dataset folder, or the cache's dataset
when it holds attributes.jsonl); for any other dataset it is the dataset's own images (read through the
cache's shared image cache), and the attribute rows are left out: there are no labels to judge them by.
With neither, it is the attribute classifier's held-out synthetic flowers.

R-precision comes twice: the cache matcher reads the GAN's own cached vectors (compare it with its own
real-image score), the shared judge reads the words (one per dataset: comparable across encoders).
"""
from __future__ import annotations

import numpy as np

from tools.errors import UserError
from tools.evaluation.attribute_classifier import attribute_accuracy, heldout_images, load_or_train
from tools.evaluation.diversity import diversity, mean_pairwise_distance
from tools.evaluation.fid import frechet_distance_from_activations, inception_score_from_probs
from tools.evaluation.real_data import ATTRIBUTE_VALUES, ATTRIBUTES, load_labelled_images, value_index

REAL_LIMIT = 2000  # least real reference images decoded from a dataset folder (2x the generated count if more)
CONFUSION_BELOW = 0.95  # the report prints the confusion of attributes scored under this accuracy
METRICS_VERSION = 2  # bump when a metric's definition changes: tools/evaluation/compare re-evaluates older metrics


def named_attributes(row: dict) -> dict:
    """The attributes a caption row names: its own attribute keys, else parsed from its text."""
    named = {a: row[a] for a in ATTRIBUTES if row.get(a) is not None}
    if named or "caption" not in row:
        return named
    from tools.synthetic.captions import parse_caption

    return parse_caption(row["caption"])


def _as_64(images: np.ndarray, where: str) -> np.ndarray:
    """uint8 [K, H, W, 3] -> [K, 64, 64, 3]: what the 64 px judges read (tools/evaluation/sizes.py: a 128 or 256 px
    image is area-downsampled, another size resized with Lanczos)."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise UserError(f"{where}: want uint8 RGB images [K, H, W, 3], got {images.dtype} {images.shape}")
    from tools.evaluation.sizes import to_judge_size

    return to_judge_size(images)


def evaluate_images(
    images_by_id: dict[str, np.ndarray], captions: dict[str, dict], dataset_dir=None, cache_path=None, *,
    classifier_dir=None, matcher_dir=None, inception_weights=None, real_limit: int = REAL_LIMIT, seed: int = 0,
    log=print, r_precision: bool = True,
) -> dict:
    """Score generated images against their captions.

    images_by_id: caption id -> uint8 [K, S, S, 3] (K noise samples of that caption); 128 and 256 px images are
    area-downsampled to the judges' 64 px and the classifier's held-out accuracy at S is reported beside its 64 px
    one (tools/evaluation/sizes.py).
    captions: caption id -> {"caption": text, and the attributes it names, e.g. "petal_color": "red"}.
    dataset_dir: a dataset folder: a synthetic-flowers one labels the real reference; any other gives its
    images as the reference and trains the shared R-precision judge when no cache is given.
    cache_path: the embedding cache the GAN trained on; enables both R-precisions (matchers train on first use)
    and gives the real reference for datasets without attribute labels.
    r_precision: False leaves out both R-precisions (their matchers train on first use: the quick setting).
    """
    ids = [i for i in images_by_id if len(images_by_id[i])]
    unknown = [i for i in ids if i not in captions]
    if unknown:
        raise UserError(f"{len(unknown)} image ids have no caption (e.g. {unknown[0]!r}); the captions file must "
                        "hold every id the images are named with")
    if len(ids) < 2:
        raise UserError(f"{len(ids)} captions with images; need at least 2 to evaluate")
    size = int(np.asarray(images_by_id[ids[0]]).shape[-2])  # the generated images' side before the judges' 64
    groups = [_as_64(images_by_id[i], f"images of caption {i}") for i in ids]  # C x [K, 64, 64, 3]
    images = np.concatenate(groups)  # [N, 64, 64, 3]
    owner = np.repeat(np.arange(len(ids)), [len(g) for g in groups])  # [N] caption row of each image
    named = [named_attributes(captions[i]) for i in ids]

    clf = load_or_train(classifier_dir, log=log)
    # FID and IS are biased by sample size: the real set is split in two halves of (up to) the generated
    # count, so that the floor compares as many real images as the generated FID does
    ref = _real_reference(dataset_dir, cache_path, classifier_dir, max(real_limit, 2 * len(images)), seed, log)
    real, real_labels = ref["images"], ref["labels"]
    feats, real_feats = clf.features(images), clf.features(real)
    out = {
        "metrics_version": METRICS_VERSION,
        "n_captions": len(ids), "n_images": len(images), "samples_per_caption": len(images) / len(ids),
        **_attributes(images, named, owner, clf, labelled=real_labels is not None),
        **_fid_is(feats, clf.joint_probs(images), real_feats, clf.joint_probs(real), seed),
        "diversity": {**diversity(groups, clf.features),
                      "feature_real": None if real_labels is None else
                      _real_diversity(named, groups, real_feats, real_labels, seed)},
        "real_reference": {"source": ref["source"], "n": len(real), "labelled": real_labels is not None},
        "classifier": {k: clf.meta.get(k) for k in ("version", "data_seed", "n_train", "heldout_accuracy")},
        "image_size": size,
    }
    if size != 64 and size % 64 == 0:  # the ceiling at this size: real flowers drawn at it, read as the images are
        from tools.evaluation.sizes import heldout_accuracy_at_size

        out["classifier"]["heldout_accuracy_at_size"] = heldout_accuracy_at_size(clf, size, classifier_dir, log)
    texts = [captions[i]["caption"] for i in ids]
    if not r_precision:
        skipped = {"value": None, "why": "left out (--quick)"}
        out["r_precision"], out["r_precision_shared"] = skipped, dict(skipped)
    else:
        out["r_precision"] = _r_precision(texts, images, owner, cache_path, matcher_dir, seed, log)
        out["r_precision_shared"] = _r_precision_shared(texts, images, owner, cache_path, ref["dataset_dir"],
                                                        matcher_dir, seed, log)
    if inception_weights:
        out["inception"] = _inception_metrics(inception_weights, images, real, seed)
    return out


def _attributes(images, named, owner, clf, labelled: bool) -> dict:
    """Attribute accuracy and its ceiling; left out (None, with why) when the real data has no labels."""
    if not labelled:
        why = "not a synthetic-flowers dataset: no attribute labels to judge images by"
        return {"attribute_accuracy": {**{a: {"accuracy": None, "count": 0} for a in ATTRIBUTES}, "mean": None,
                                       "why": why},
                "attribute_ceiling": None}
    acc = attribute_accuracy(images, [named[c] for c in owner], clf)
    scored = [v["accuracy"] for v in acc.values() if v["accuracy"] is not None]
    return {"attribute_accuracy": {**acc, "mean": float(np.mean(scored)) if scored else None},
            "attribute_ceiling": clf.meta["heldout_accuracy"]}


def _real_reference(dataset_dir, cache_path, classifier_dir, limit: int, seed: int, log) -> dict:
    """{"images": uint8 [R, 64, 64, 3], "labels": int64 [R, 4] or None, "source", "dataset_dir"}: the labelled
    synthetic set when there is one, else the dataset's own images, else the classifier's held-out flowers."""
    from tools.evaluation.pairs import load_pairs, reference_images, resolve_dataset_dir

    labelled_dir = resolve_dataset_dir(dataset_dir, cache_path)
    if labelled_dir is not None and (labelled_dir / "attributes.jsonl").is_file():
        real, labels = load_labelled_images(labelled_dir, limit=limit, seed=seed)
        return {"images": real, "labels": labels, "source": str(labelled_dir), "dataset_dir": labelled_dir}
    if cache_path is not None or dataset_dir is not None:
        pairs = load_pairs(cache_path=cache_path, dataset_dir=dataset_dir if cache_path is None else None, log=log)
        real = reference_images(pairs, limit, seed)
        return {"images": real, "labels": None, "dataset_dir": dataset_dir,
                "source": f"{len(real)} of the {len(pairs.images)} images of {pairs.name} ({pairs.source})"}
    real, labels = heldout_images(classifier_dir)
    return {"images": real, "labels": labels, "source": "attribute classifier held-out set", "dataset_dir": None}


def _sizes(n_gen: int, n_real: int, seed: int) -> tuple[int, slice, np.ndarray]:
    """(half, second-half slice of n real rows, n sorted generated rows), n = min(n_gen, n_real - half).

    FID and IS are biased by sample size, so the generated set and the floor use the same n."""
    half = n_real // 2
    n = min(n_gen, n_real - half)
    return half, slice(half, half + n), np.sort(np.random.default_rng(seed).choice(n_gen, n, replace=False))


def _fid_is(feats, probs, real_feats, real_probs, seed: int) -> dict:
    """FID of n generated images vs the first real half; the floor: n images of the second half vs the first;
    IS (224-way) of the same n generated and n real images."""
    half, other, pick = _sizes(len(feats), len(real_feats), seed)
    ref = real_feats[:half]
    return {
        "fid": frechet_distance_from_activations(feats[pick], ref),
        "fid_floor": frechet_distance_from_activations(real_feats[other], ref),
        "fid_sizes": {"generated": len(pick), "real": half},
        "is": inception_score_from_probs(probs[pick])[0],
        "is_real": inception_score_from_probs(real_probs[other])[0],
    }


def _real_diversity(named, groups, real_feats, real_labels, seed: int) -> float | None:
    """Mean pairwise feature distance of K real images fitting each caption (K = that caption's sample count)."""
    rng = np.random.default_rng(seed)
    values = []
    for attrs, g in zip(named, groups):
        if len(g) < 2:
            continue
        ok = np.ones(len(real_labels), bool)
        for j, a in enumerate(ATTRIBUTES):
            if attrs.get(a) is not None:
                ok &= real_labels[:, j] == value_index(a, attrs[a])
        rows = np.flatnonzero(ok)
        if len(rows) >= len(g):
            values.append(mean_pairwise_distance(real_feats[rng.choice(rows, len(g), replace=False)]))
    return float(np.mean(values)) if values else None


def _r_precision(texts, images, owner, cache_path, matcher_dir, seed, log) -> dict:
    """R-precision through the cache matcher (reads the GAN's cached vectors): every image against its
    caption and up to 99 other captions of the set."""
    if cache_path is None:
        return {"value": None, "why": "no embedding cache given (--cache): the matcher reads the GAN's text vectors"}
    from cache.reader import EmbeddingCache
    from tools.evaluation.matching import caption_vectors, load_or_train_matcher

    try:
        matcher = load_or_train_matcher(cache_path, matcher_dir, log=log)
    except UserError as e:  # e.g. too few real pairs to train a matcher: the other metrics still stand
        log(f"R-precision skipped: {e}")
        return {"value": None, "why": str(e)}
    with EmbeddingCache.open(cache_path) as cache:
        vectors = caption_vectors(cache, texts)  # [C, D]
    return _score(matcher, matcher.embed_texts(vectors), images, owner, seed)


def _r_precision_shared(texts, images, owner, cache_path, dataset_dir, matcher_dir, seed, log) -> dict:
    """R-precision through the dataset's shared judge (reads the words; the same for every encoder)."""
    if cache_path is None and dataset_dir is None:
        return {"value": None, "why": "no real pairs to train the shared judge: give --cache or --dataset"}
    from tools.evaluation.shared_matcher import load_or_train_shared_matcher

    try:
        judge = load_or_train_shared_matcher(cache_path, dataset_dir, matcher_dir, log=log)
    except UserError as e:
        log(f"shared R-precision skipped: {e}")
        return {"value": None, "why": str(e)}
    return {**_score(judge, judge.embed_captions(texts), images, owner, seed), "judge": judge.meta["pairs_key"][:16]}


def _score(matcher, text_emb, images, owner, seed) -> dict:
    from tools.evaluation.matching import N_CANDIDATES, r_precision_scores

    n = min(N_CANDIDATES, len(text_emb))
    scores = r_precision_scores(matcher.embed_images(images), text_emb, owner, n_candidates=n, seed=seed)
    # per image (1, 0, or 1/(k+1) on a k-way tie): two runs evaluated alike are compared image by image
    return {"value": float(scores.mean()), "stderr": float(scores.std(ddof=1) / np.sqrt(len(scores))),
            "real": matcher.meta["r_precision_real"], "n_candidates": n,
            "scores": [round(float(v), 4) for v in scores]}


def without_scores(metrics: dict | None) -> dict | None:
    """The metrics without the R-precisions' per-image scores (for results files; tools/evaluate.py keeps them)."""
    if metrics is None:
        return None
    out = dict(metrics)
    for key in ("r_precision", "r_precision_shared"):
        if isinstance(out.get(key), dict):
            out[key] = {k: v for k, v in out[key].items() if k != "scores"}
    return out


def _inception_metrics(weights, images, real, seed: int) -> dict:
    """The same FID/IS comparisons in InceptionV3 space (pool3 features, 1000 ImageNet classes)."""
    from tools.evaluation.inception import load_inception

    net = load_inception(weights)
    half, other, pick = _sizes(len(images), len(real), seed)
    gen_f, real_f = net.features(images[pick]), net.features(real)
    splits = 10 if len(pick) >= 1000 else 1  # the usual 10 splits only when each keeps >= 100 images
    return {
        "fid": frechet_distance_from_activations(gen_f, real_f[:half]),
        "fid_floor": frechet_distance_from_activations(real_f[other], real_f[:half]),
        "is": inception_score_from_probs(net.probs(images[pick]), splits)[0],
        "is_real": inception_score_from_probs(net.probs(real[other]), splits)[0],
        "is_splits": splits,
    }


def _fmt(v, digits=3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def format_table(m: dict) -> str:
    """The metrics as an aligned text table: metric | generated | real reference."""
    rows = [("metric", "generated", "real reference")]
    at_size = (m.get("classifier") or {}).get("heldout_accuracy_at_size")  # 128 / 256 px: the ceiling at that size
    if m["attribute_ceiling"] is not None:  # labelled (synthetic) data only
        for a in ATTRIBUTES:
            acc = m["attribute_accuracy"][a]
            ceiling = _fmt(m["attribute_ceiling"][a]) + " ceiling" + (
                f" ({_fmt(at_size[a])} at {m['image_size']} px)" if at_size else "")
            rows.append((f"{a} accuracy (n={acc['count']})", _fmt(acc["accuracy"]), ceiling))
        rows.append(("mean attribute accuracy", _fmt(m["attribute_accuracy"]["mean"]), ""))
        if m.get("binding"):  # tools/evaluation/binding.py: the swap pairs
            from tools.evaluation.binding import table_rows

            rows += [(label, _fmt(v), _fmt(real) + " real") for label, v, real in table_rows(m["binding"])]
    rows.append(("FID, classifier features", _fmt(m["fid"], 2), _fmt(m["fid_floor"], 2) + " floor"))
    rows.append(("IS, 224 attribute combinations", _fmt(m["is"], 1), _fmt(m["is_real"], 1)))
    for key, label in (("r_precision_shared", "shared judge"), ("r_precision", "cache matcher")):
        rp = m.get(key) or {"value": None}
        rows.append((f"R-precision, {label} (1 of {rp.get('n_candidates', 100)})", _fmt(rp["value"]), _fmt(rp.get("real"))))
    d = m["diversity"]
    rows.append((f"diversity, features ({d['captions']} captions)", _fmt(d["feature"], 2), _fmt(d["feature_real"], 2)))
    rows.append(("diversity, pixels (RMS)", _fmt(d["pixel"]), ""))
    if "inception" in m:
        inc = m["inception"]
        rows.append(("FID, InceptionV3 pool3", _fmt(inc["fid"], 2), _fmt(inc["fid_floor"], 2) + " floor"))
        rows.append(("IS, InceptionV3", _fmt(inc["is"], 2), _fmt(inc["is_real"], 2)))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:<{widths[2]}}".rstrip() for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    note = f"{m['n_captions']} captions x {m['samples_per_caption']:.3g} samples; real reference: {m['real_reference']['source']}"
    if m.get("image_size", 64) != 64:
        note += f"\n{m['image_size']} px images (generated and real) read area-downsampled to 64 px by every judge"
    if m["attribute_ceiling"] is None:
        note += "\nno attribute rows: " + m["attribute_accuracy"]["why"]
    return "\n".join(lines + format_confusions(m["attribute_accuracy"]) + [note])


def format_confusions(accuracy: dict, below: float = CONFUSION_BELOW) -> list[str]:
    """Text blocks, one per attribute scored under `below`: which value the images show (columns) for the value
    the caption names (rows), e.g. whether a wrong petal count is one petal off or any count."""
    out = []
    for a in ATTRIBUTES:
        acc = accuracy.get(a) or {}
        if acc.get("accuracy") is None or acc["accuracy"] >= below or "confusion" not in acc:
            continue
        values = [str(v) for v in ATTRIBUTE_VALUES[a]]
        width = max(6, *(len(v) + 1 for v in values))
        out.append(f"{a}: rows the value named, columns the value shown")
        out.append(" " * width + "".join(f"{v:>{width}}" for v in values))
        out += [f"{v:>{width}}" + "".join(f"{n:>{width}}" for n in row) for v, row in zip(values, acc["confusion"])]
        if acc.get("unread"):
            out.append(f"{'':>{width}}{acc['unread']} images show no {a.replace('_', ' ')} at all")
    return out
