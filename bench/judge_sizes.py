"""How well the 64 px attribute classifier reads real flowers drawn at 128 and 256 px and area-downsampled, beside
the same flowers drawn at 64 px: the ceiling of attribute accuracy for runs at those sizes.

    python bench/judge_sizes.py                      # 1 000 fresh flowers (seed 90211) per size; cache/attribute_classifier
    python bench/judge_sizes.py --sizes 128 --classifier-dir cache/attribute_classifier

Each size's figures are kept beside the classifier (heldout_<size>.json, tools/evaluation/sizes.py), which is what
tools/evaluate.py reports as the ceiling of a 128 or 256 px run; a second call reads them back.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="128,256", help="sizes to read (default %(default)s)")
    p.add_argument("--classifier-dir", type=Path, help="the attribute classifier (default cache/attribute_classifier)")
    args = p.parse_args(argv)
    from tools.evaluation.attribute_classifier import DEFAULT_DIR, load_or_train
    from tools.evaluation.real_data import ATTRIBUTES
    from tools.evaluation.sizes import HELDOUT_SEED, heldout_accuracy_at_size

    directory = args.classifier_dir or DEFAULT_DIR
    clf = load_or_train(directory)
    print(f"classifier {directory}: its own held-out accuracy (64 px) "
          + " ".join(f"{a} {v:.3f}" for a, v in clf.meta["heldout_accuracy"].items()))
    print(f"\n{'flowers':<36} " + " ".join(f"{a:>13}" for a in ATTRIBUTES))
    for size in [int(s) for s in args.sizes.split(",") if s]:
        acc = heldout_accuracy_at_size(clf, size, directory)
        saved = json.loads((Path(directory) / f"heldout_{size}.json").read_text())
        n = saved["n"]
        print(f"{f'{n} fresh (seed {HELDOUT_SEED}), drawn at 64':<36} "
              + " ".join(f"{saved['accuracy_64'][a]:>13.3f}" for a in ATTRIBUTES))
        print(f"{f'the same drawn at {size}, area to 64':<36} " + " ".join(f"{acc[a]:>13.3f}" for a in ATTRIBUTES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
