"""FID and diversity on motion features, as Bailando's ``metrics_new.py`` computes them.

Both feature sets are normalised with the ground-truth set's statistics (mean, std + 1e-10) before the
Frechet distance and the diversities are computed. The Frechet distance uses ``scipy.linalg.sqrtm`` of
``Sigma_gt @ Sigma_pred``, retried with ``1e-5 * I`` added to both covariances when the square root is
not finite, and keeps the real part. Diversity is the mean Euclidean distance over all unordered pairs.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg
from scipy.spatial.distance import pdist

STD_EPS = 1e-10
SQRTM_EPS = 1e-5


def normalize_by_gt(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(gt, pred) features (N, D) / (M, D) standardised with the GT mean and (population) std."""
    gt = np.asarray(gt)
    pred = np.asarray(pred)
    mean = gt.mean(axis=0)
    std = gt.std(axis=0)
    return (gt - mean) / (std + STD_EPS), (pred - mean) / (std + STD_EPS)


def frechet_distance(gt: np.ndarray, pred: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (N, D) and (M, D)."""
    mu1, sigma1 = np.mean(gt, axis=0), np.cov(gt, rowvar=False)
    mu2, sigma2 = np.mean(pred, axis=0), np.cov(pred, rowvar=False)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    diff = mu1 - mu2
    with warnings.catch_warnings():  # few samples make the product singular: expected, not news
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(sigma1.dot(sigma2))
        if not np.isfinite(covmean).all():  # near-singular product: nudge both covariances
            offset = np.eye(sigma1.shape[0]) * SQRTM_EPS
            covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    covmean = np.real(covmean)
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def diversity(features: np.ndarray) -> float:
    """Mean pairwise Euclidean distance over all unordered pairs of rows (N >= 2)."""
    features = np.asarray(features, dtype=np.float64)
    if features.shape[0] < 2:
        raise ValueError("diversity needs at least two sequences")
    return float(pdist(features).mean())


def fid_and_diversity(gt_features: np.ndarray, pred_features: np.ndarray) -> dict[str, float]:
    """``{"fid", "div", "div_gt"}`` of one feature kind, after GT normalisation of both sets."""
    gt_n, pred_n = normalize_by_gt(gt_features, pred_features)
    return {"fid": frechet_distance(gt_n, pred_n), "div": diversity(pred_n), "div_gt": diversity(gt_n)}
