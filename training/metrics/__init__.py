"""Evaluation metrics: the paper's (FID_k, FID_g, Div_k, Div_g, BAS, bit-for-bit with the official
code) and physical ones (PFC, foot skating, ground contact, jitter, speed, freezing)."""

from training.errors import EvaluationError

from .beats import beat_align_score, motion_beats
from .evaluate import compute_metrics, evaluate_folders, write_report
from .features import extract_motion_features, kinetic_features, manual_features, zero_start
from .fid import diversity, fid_and_diversity, frechet_distance, normalize_by_gt
from .physical import physical_metrics

__all__ = [
    "EvaluationError", "beat_align_score", "compute_metrics", "diversity", "evaluate_folders",
    "extract_motion_features", "fid_and_diversity", "frechet_distance", "kinetic_features", "manual_features",
    "motion_beats", "normalize_by_gt", "physical_metrics", "write_report", "zero_start",
]
