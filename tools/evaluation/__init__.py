"""Evaluation of generated images: does the image follow the text, and does it look real?

    from tools.evaluation import evaluate_images, format_table
    metrics = evaluate_images({"1": imgs_1, ...}, {"1": {"caption": ..., "petal_color": "red"}, ...}, dataset_dir)

fid.py                   FID / IS written once over any classifier (`*_from_activations`, `*_from_probs`)
attribute_classifier.py  the 4-head attribute CNN (the yardstick; its features are the FID space)
matching.py              R-precision, and the cache matcher (reads one encoder's cached vectors)
shared_matcher.py        the shared R-precision judge: own text encoder, one per dataset, fair across encoders
pairs.py                 a dataset's real image–caption pairs from any of its caches or its folder
diversity.py             spread across noise samples of one caption
inception.py             InceptionV3 IS/FID from user-supplied weights
networks.py              the rotation-invariant image trunk every learned model shares
real_data.py             real synthetic flowers (and their attributes) as arrays
report.py                every metric with its real reference; the printed table
probe.py                 linear probe: attributes read from caption vectors alone
compare.py               encoder comparison runs (cache, probe, train, evaluate, reuse); compare_report.py: tables, chart
Heavy imports (keras, tensorflow) happen only when a model is built or run.
"""
from tools.evaluation.attribute_classifier import AttributeClassifier, attribute_accuracy, load_or_train
from tools.evaluation.diversity import diversity, mean_pairwise_distance, pixel_distance
from tools.evaluation.fid import (
    fid,
    frechet_distance_from_activations,
    frechet_distance_from_stats,
    inception_score,
    inception_score_from_logits,
    inception_score_from_probs,
)
from tools.evaluation.matching import load_or_train_matcher, r_precision
from tools.evaluation.shared_matcher import load_or_train_shared_matcher
from tools.evaluation.report import evaluate_images, format_table

__all__ = [
    "AttributeClassifier", "attribute_accuracy", "load_or_train", "diversity", "mean_pairwise_distance",
    "pixel_distance", "fid", "frechet_distance_from_activations", "frechet_distance_from_stats", "inception_score",
    "inception_score_from_logits", "inception_score_from_probs", "load_or_train_matcher",
    "load_or_train_shared_matcher", "r_precision",
    "evaluate_images", "format_table",
]
