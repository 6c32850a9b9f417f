"""Fréchet distance and Inception Score, written once over any classifier (TF-GAN style).

The `*_from_activations` / `*_from_probs` functions take features or class probabilities that were computed
once; `fid` and `inception_score` take images and a feature/probability function (the attribute classifier
here, or InceptionV3 when the user supplies its weights — tools/evaluation/inception.py).
No scipy: the matrix square root is taken through symmetric eigendecompositions (see `trace_sqrt_product`).
"""
from __future__ import annotations

from typing import Callable

import numpy as np


def _sqrt_psd(mat: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix; tiny negative eigenvalues (round-off) -> 0."""
    vals, vecs = np.linalg.eigh((mat + mat.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """Tr((Σ1 Σ2)^½) for covariance matrices.

    Σ1Σ2 is not symmetric, but it is similar to the PSD matrix M = Σ1^½ Σ2 Σ1^½ (conjugate by Σ1^½), so
    both have the same eigenvalues and Tr((Σ1Σ2)^½) = Σ sqrt(eig(M)). Only `eigh` is needed.
    """
    root1 = _sqrt_psd(sigma1)
    mid = root1 @ sigma2 @ root1
    vals = np.linalg.eigvalsh((mid + mid.T) / 2)
    return float(np.sum(np.sqrt(np.clip(vals, 0, None))))


def activation_stats(act: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[N, F] activations -> mean [F] and covariance [F, F] (float64, unbiased, as in TF-GAN / pytorch-fid)."""
    act = np.asarray(act, dtype=np.float64)
    if act.ndim != 2 or act.shape[0] < 2:
        raise ValueError(f"activations must be [N >= 2, F], got shape {act.shape}")
    return act.mean(axis=0), np.cov(act, rowvar=False).reshape(act.shape[1], act.shape[1])


def frechet_distance_from_stats(mu1, sigma1, mu2, sigma2) -> float:
    """FID = ||μ1 − μ2||² + Tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^½)  (Heusel et al. 2017, "GANs trained by a two time-scale
    update rule converge to a local Nash equilibrium"). Clipped at 0 against round-off."""
    diff = np.asarray(mu1, np.float64) - np.asarray(mu2, np.float64)
    tr = np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product(sigma1, sigma2)
    return max(0.0, float(diff @ diff + tr))


def frechet_distance_from_activations(act1: np.ndarray, act2: np.ndarray) -> float:
    """FID between two sets of classifier activations, [N1, F] and [N2, F]."""
    if np.shape(act1)[1:] != np.shape(act2)[1:]:
        raise ValueError(f"feature dims differ: {np.shape(act1)} vs {np.shape(act2)}")
    return frechet_distance_from_stats(*activation_stats(act1), *activation_stats(act2))


def inception_score_from_probs(probs: np.ndarray, splits: int = 1) -> tuple[float, float]:
    """IS = exp(E_x KL(p(y|x) ‖ p(y))) (Salimans et al. 2016), mean and std over `splits` equal chunks.

    probs: [N, C] rows summing to 1. Ranges from 1 (every image gets the same prediction) to C (confident
    predictions spread evenly over all C classes); with few images per split it is also bounded by N/splits.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or len(probs) < splits or splits < 1:
        raise ValueError(f"probs must be [N >= splits, C] with splits >= 1, got {probs.shape}, splits={splits}")
    scores = []
    for part in np.array_split(probs, splits):
        marginal = part.mean(axis=0, keepdims=True)  # [1, C] p(y) over this split
        # 0·log 0 = 0: only terms with p(y|x) > 0 contribute (then p(y) > 0 too)
        terms = np.where(part > 0, part * (np.log(np.where(part > 0, part, 1)) - np.log(np.where(part > 0, marginal, 1))), 0)
        scores.append(np.exp(terms.sum(axis=1).mean()))
    return float(np.mean(scores)), float(np.std(scores))


def inception_score_from_logits(logits: np.ndarray, splits: int = 1) -> tuple[float, float]:
    """IS from unnormalised logits [N, C] (softmax taken here, stably)."""
    logits = np.asarray(logits, dtype=np.float64)
    z = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(z)
    return inception_score_from_probs(probs / probs.sum(axis=1, keepdims=True), splits)


def fid(images_a: np.ndarray, images_b: np.ndarray, feature_fn: Callable[[np.ndarray], np.ndarray]) -> float:
    """FID between two uint8 image sets [N, H, W, 3] in the feature space of `feature_fn` (images -> [N, F])."""
    return frechet_distance_from_activations(feature_fn(images_a), feature_fn(images_b))


def inception_score(images: np.ndarray, probs_fn: Callable[[np.ndarray], np.ndarray], splits: int = 1) -> tuple[float, float]:
    """IS of uint8 images [N, H, W, 3] under any classifier `probs_fn` (images -> [N, C] probabilities)."""
    return inception_score_from_probs(probs_fn(images), splits)
