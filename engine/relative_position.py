"""Where a follower stands relative to the leader, as one code per frame (the duet's relative-position
token; Duolando learns a VQ-VAE for it, a fixed polar grid serves the little duet data at hand).

The follower's pelvis on the floor is expressed in the leader's facing frame (``skeleton.
facing_direction``: ahead of him, to his left) as a distance and a bearing; the distance falls into one
of ``radii`` bins and the bearing into one of ``bearings`` equal sectors, and the code is
``radius_bin * bearings + sector``. Decoding puts the follower at the bin's centre in the leader's
current frame, then smooths the path over time (a quantised path jumps from bin to bin).

Round trip on the 13 CMU salsa couples (``tests/engine/test_relative_position.py``): see
``DEFAULT_GRID``'s comment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d

from .errors import InvalidOptionError
from .skeleton import facing_frame


@dataclass(frozen=True)
class PolarGrid:
    """Distance bins (edges in metres, the last bin open-ended) x ``bearings`` equal sectors, the first
    centred straight ahead of the leader."""

    radii: tuple[float, ...] = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.05, 1.25, 1.5, 1.9, 2.5)
    bearings: int = 32
    smooth_s: float = 0.05  # decoding smooths the path with a Gaussian of this sigma (seconds)

    def __post_init__(self) -> None:
        edges = np.asarray(self.radii, dtype=np.float64)
        if edges.ndim != 1 or len(edges) < 2 or edges[0] != 0.0 or np.any(np.diff(edges) <= 0):
            raise InvalidOptionError(f"radii must be increasing bin edges from 0, got {self.radii}")
        if not (isinstance(self.bearings, int) and self.bearings >= 4):
            raise InvalidOptionError(f"bearings must be a whole number of at least 4, got {self.bearings}")

    @property
    def size(self) -> int:
        """How many codes there are."""
        return (len(self.radii) - 1) * self.bearings

    def _centres(self) -> tuple[np.ndarray, np.ndarray]:
        edges = np.asarray(self.radii, dtype=np.float64)
        radius = (edges[:-1] + edges[1:]) / 2.0  # (R,): the open last bin is read as its edges' middle
        bearing = np.arange(self.bearings) * (2 * np.pi / self.bearings)  # (S,) radians, 0 = ahead
        return radius, bearing

    def encode(self, leader: np.ndarray, follower: np.ndarray) -> np.ndarray:
        """Codes (T,) int64 of the follower's pelvis around the leader's, for joints (T, 24, 3) y-up."""
        leader, follower = np.asarray(leader, np.float64), np.asarray(follower, np.float64)
        if leader.shape != follower.shape or leader.ndim != 3 or leader.shape[1:] != (24, 3):
            raise InvalidOptionError(f"leader and follower must both be (T, 24, 3), got {leader.shape} and "
                                     f"{follower.shape}")
        ahead, left = facing_frame(leader)
        offset = follower[:, 0] - leader[:, 0]
        x, z = (offset * left).sum(axis=1), (offset * ahead).sum(axis=1)
        distance = np.hypot(x, z)
        ring = np.clip(np.searchsorted(self.radii, distance, side="right") - 1, 0, len(self.radii) - 2)
        width = 2 * np.pi / self.bearings
        sector = np.floor((np.arctan2(x, z) + width / 2) / width).astype(np.int64) % self.bearings
        return (ring * self.bearings + sector).astype(np.int64)

    def decode(self, codes: np.ndarray, leader: np.ndarray, fps: float = 60.0) -> np.ndarray:
        """The follower's pelvis on the floor (T, 3) (y = 0) in the leader's world, from codes (T,) and the
        leader's joints (T, 24, 3): the bin centres, smoothed over ``smooth_s``."""
        codes = np.asarray(codes)
        if codes.shape != (len(leader),) or np.any((codes < 0) | (codes >= self.size)):
            raise InvalidOptionError(f"codes must be ({len(leader)},) in 0..{self.size - 1}")
        radius, bearing = self._centres()
        r, b = radius[codes // self.bearings], bearing[codes % self.bearings]
        local = np.stack([r * np.sin(b), r * np.cos(b)], axis=1)  # (T, 2): left, ahead
        if self.smooth_s > 0 and len(codes) > 1:
            local = gaussian_filter1d(local, sigma=self.smooth_s * fps, axis=0, mode="nearest")
        ahead, left = facing_frame(np.asarray(leader, np.float64))
        pelvis = np.asarray(leader, np.float64)[:, 0] * [1.0, 0.0, 1.0]
        return pelvis + local[:, :1] * left + local[:, 1:] * ahead


# 12 distance bins x 32 sectors (384 codes). On the 13 salsa couples (6.1 min a dancer) the decoded
# pelvis lies a median 2.5 cm from the real one (95th percentile 8.7 cm, worst 0.50 m in a fast turn);
# without smoothing 4.7 / 11.0 cm; 16 sectors 4.6 / 14.4 cm, 24 sectors 3.2 / 10.2 cm (same smoothing).
DEFAULT_GRID = PolarGrid()
