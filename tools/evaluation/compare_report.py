"""Reports of an encoder comparison (tools/evaluation/compare.run_comparison's state): the markdown
tables and the bar chart, shared by tools/compare_encoders.py and bench/quality.py."""
from __future__ import annotations

import json
from pathlib import Path


def _f(v, digits=3) -> str:
    if v is None:
        return "-"
    return str(v) if isinstance(v, int) else f"{v:.{digits}f}"


def markdown(state: dict) -> str:
    from tools.evaluation.compare import METRIC_DIGITS as digits
    from tools.evaluation.compare import metric_rows
    from tools.evaluation.real_data import ATTRIBUTES

    synthetic, names = state["dataset"]["synthetic"], state["order"]
    arms, ev = state["arms"], state["evaluation"]
    labels = [label for label, _, _ in metric_rows(arms[names[0]], synthetic)]
    lines = [f"# Encoder comparison on {state['dataset']['name']}", "",
             f"GAN options shared by every encoder: `{json.dumps(state['train'])}`; evaluation: "
             f"{ev['n_per_caption']} samples per caption, seed {ev['seed']}, on {ev.get('captions', 'test captions')}.", "",
             "## GAN trained on each encoder's cache", "",
             "| encoder | dim | " + " | ".join(labels) + " |", "|---" * (len(labels) + 2) + "|"]
    for name in names:
        rows = metric_rows(arms[name], synthetic)
        lines.append(f"| {name} | {arms[name].get('dim', '-')} | " + " | ".join(
            _f(v, digits.get(label, 3)) for label, v, _ in rows) + " |")
    real = _real_rows(state)
    lines.append("| real reference | | " + " | ".join(_f(r, digits.get(label, 3)) for label, _, r in real) + " |")
    lines += ["", "Real reference: attribute rows = the attribute classifier's held-out accuracy (the ceiling); "
              "FID = two disjoint real sets (the floor); IS, diversity = the same metric on real images. "
              "R-precision, shared judge: one image-text matcher per dataset with a text encoder of its own, the same "
              "for every encoder (compare these across encoders; its reference is real images' score). R-precision, "
              "cache matcher: a matcher trained on each encoder's own cached vectors: compare it only with that "
              "encoder's own 'R-precision of real images, cache matcher'."]
    if not synthetic:
        lines.append("No attribute labels in this dataset: FID and IS are measured in the synthetic-flower "
                     "classifier's feature space against the dataset's own images; for the standard numbers "
                     "evaluate with --inception-weights.")
    if synthetic:
        lines += ["", "## Linear probe: held-out accuracy of a softmax regression on the caption vectors alone", "",
                  "| encoder | " + " | ".join(ATTRIBUTES) + " | mean | majority class |", "|---" * 7 + "|"]
        for name in names:
            p = arms[name].get("probe") or {}
            majority = [p[a]["majority"] for a in ATTRIBUTES if (p.get(a) or {}).get("majority") is not None]
            lines.append(f"| {name} | " + " | ".join(_f((p.get(a) or {}).get("accuracy")) for a in ATTRIBUTES) +
                         f" | {_f(p.get('mean'))} | {_f(sum(majority) / len(majority) if majority else None)} |")
    lines += ["", "Runs: " + "; ".join(f"{n} = `{arms[n].get('run_dir')}`" for n in names)]
    lines += [f"{n}: {arms[n]['error']}" for n in names if arms[n].get("error")]
    return "\n".join(lines) + "\n"


def chart(state: dict, path: Path) -> None:
    """Synthetic sets: per attribute (and their mean), one bar per encoder — GAN images with the classifier's
    ceiling, and the linear probe beside it. Other sets: R-precision, FID, IS, diversity, one bar per encoder."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from tools.evaluation.compare import metric_rows

    names, arms, synthetic = state["order"], state["arms"], state["dataset"]["synthetic"]
    rows = {n: metric_rows(arms[n], synthetic) for n in names}
    real = _real_rows(state)
    nan = lambda v: np.nan if v is None else v  # noqa: E731  (a missing number draws no bar)
    colors = [f"C{k}" for k in range(len(names))]
    if synthetic:
        groups = [label.replace(" accuracy", "") for label, _, _ in rows[names[0]][:5]]
        probe_keys = [g if g != "mean attribute" else "mean" for g in groups]
        panels = [("GAN images: attribute accuracy (black: classifier ceiling)",
                   [[v for _, v, _ in rows[n][:5]] for n in names], [r for _, _, r in real[:5]]),
                  ("linear probe on the caption vectors: held-out accuracy",
                   [[_probe_value(arms[n], k) for k in probe_keys] for n in names], None)]
        if not any(arms[n].get("probe") for n in names):  # e.g. bench/quality.py: the GANs only
            panels = panels[:1]
        widths = [6.5] * len(panels) + [2.2]
        fig, axes = plt.subplots(1, len(panels) + 1, figsize=(sum(widths), 4.2), squeeze=False,
                                 gridspec_kw={"width_ratios": widths})
        axes = axes[0]
        _r_precision_panel(axes[-1], names, rows, real, colors, nan)
        width, x = 0.8 / len(names), np.arange(len(groups))
        for ax, (title, values, ceiling) in zip(axes, panels):
            for k, name in enumerate(names):
                ax.bar(x + (k - (len(names) - 1) / 2) * width, [nan(v) for v in values[k]], width, label=name,
                       color=colors[k])
            if ceiling:
                ax.scatter(x, [nan(c) for c in ceiling], marker="_", s=900, c="k")
            ax.set_xticks(x, groups, rotation=15)
            ax.set_ylim(0, 1.05)
            ax.set_title(title, fontsize=10)
            ax.legend(fontsize=8, loc="lower right")
    else:
        labels = ("R-precision, shared judge", "FID", "IS", "diversity")
        fig, axes = plt.subplots(1, 4, figsize=(13, 3.8))
        for ax, label in zip(axes, labels):
            ax.bar(range(len(names)), [nan(dict((lb, v) for lb, v, _ in rows[n])[label]) for n in names],
                   color=colors)
            ref = dict((lb, r) for lb, _, r in real)[label]
            if ref is not None:
                ax.axhline(ref, color="k", ls="--", lw=1, label="real reference")
                ax.legend(fontsize=8)
            ax.set_xticks(range(len(names)), names, rotation=15)
            ax.set_title(label + (" (lower is better)" if label == "FID" else ""), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _r_precision_panel(ax, names, rows, real, colors, nan) -> None:
    """One bar per arm: R-precision by the dataset's shared judge, the real images' score as a dashed line."""
    label = "R-precision, shared judge"
    ax.bar(range(len(names)), [nan(dict((lb, v) for lb, v, _ in rows[n])[label]) for n in names], color=colors)
    ref = dict((lb, r) for lb, _, r in real)[label]
    if ref is not None:
        ax.axhline(ref, color="k", ls="--", lw=1, label="real images")
        ax.legend(fontsize=8, loc="upper right")
    ax.set_xticks(range(len(names)), names, rotation=15)
    ax.set_ylim(0, 1.05 * max(0.5, ref or 0))
    ax.set_title(label, fontsize=10)


def _real_rows(state: dict) -> list:
    """metric_rows of the first arm that has metrics (the real references are the same for every arm)."""
    from tools.evaluation.compare import metric_rows

    arms, synthetic = state["arms"], state["dataset"]["synthetic"]
    first = next((n for n in state["order"] if arms[n].get("metrics")), state["order"][0])
    return metric_rows(arms[first], synthetic)


def _probe_value(entry: dict, key: str):
    probe = entry.get("probe") or {}
    return probe.get("mean") if key == "mean" else (probe.get(key) or {}).get("accuracy")


def write_report(state: dict, out: Path) -> None:
    (out / "comparison.md").write_text(markdown(state), encoding="utf-8")
    chart(state, out / "comparison.png")
