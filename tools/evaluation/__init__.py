"""Evaluation of generated images: does the image follow the text, and does it look real?

    from tools.evaluation import evaluate_images, format_table
    metrics = evaluate_images({"1": imgs_1, ...}, {"1": {"caption": ..., "petal_color": "red"}, ...}, dataset_dir)

fid.py                   FID / IS written once over any classifier (`*_from_activations`, `*_from_probs`)
attribute_classifier.py  the 4-head attribute CNN (the yardstick; its features are the FID space)
matching.py              R-precision and the image–text matcher it needs
diversity.py             spread across noise samples of one caption
inception.py             InceptionV3 IS/FID from user-supplied weights
networks.py              the rotation-invariant image trunk both learned models share
real_data.py             real synthetic flowers (and their attributes) as arrays
report.py                every metric with its real reference; the printed table
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
from tools.evaluation.report import evaluate_images, format_table

__all__ = [
    "AttributeClassifier", "attribute_accuracy", "load_or_train", "diversity", "mean_pairwise_distance",
    "pixel_distance", "fid", "frechet_distance_from_activations", "frechet_distance_from_stats", "inception_score",
    "inception_score_from_logits", "inception_score_from_probs", "load_or_train_matcher", "r_precision",
    "evaluate_images", "format_table",
]
