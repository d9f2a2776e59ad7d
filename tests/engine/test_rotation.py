"""The rotation primitives every package shares: shortest arc, Kabsch fit, slerp of matrices."""

from __future__ import annotations

import numpy as np

from engine.rotation import (
    axis_angle_to_matrix,
    best_rotation,
    matrix_to_quaternion,
    quaternion_slerp,
    quaternion_to_matrix,
    rotation_between,
    slerp_matrices,
)


def _is_rotation(r: np.ndarray) -> bool:
    eye = np.broadcast_to(np.eye(3), r.shape)
    return np.allclose(r @ np.swapaxes(r, -1, -2), eye, atol=1e-9) and np.allclose(np.linalg.det(r), 1.0, atol=1e-9)


def test_rotation_between_turns_a_onto_b_by_the_smallest_angle_even_when_opposite():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(500, 3)), rng.normal(size=(500, 3)) * 3.0
    a[:3] = [[1, 0, 0], [0, 0, 2], [0.3, -0.4, 0.5]]
    b[:3] = -a[:3]  # exactly opposite
    b[3] = a[3] * 5  # the same direction
    r = rotation_between(a, b)
    unit_a, unit_b = a / np.linalg.norm(a, axis=1)[:, None], b / np.linalg.norm(b, axis=1)[:, None]
    assert _is_rotation(r)
    np.testing.assert_allclose(np.einsum("nij,nj->ni", r, unit_a), unit_b, atol=1e-9)
    angle = np.arccos(np.clip((np.trace(r, axis1=1, axis2=2) - 1) / 2, -1, 1))
    np.testing.assert_allclose(angle, np.arccos(np.clip(np.sum(unit_a * unit_b, 1), -1, 1)), atol=1e-6)
    np.testing.assert_allclose(r[3], np.eye(3), atol=1e-12)
    np.testing.assert_allclose(rotation_between(a[5], b[5]), r[5], atol=1e-12)  # unbatched


def test_best_rotation_recovers_a_rotation_and_never_reflects():
    rng = np.random.default_rng(1)
    rest = rng.normal(size=(5, 3))
    truth = axis_angle_to_matrix(rng.normal(size=(20, 3)))
    posed = np.einsum("tij,kj->tki", truth, rest) + rng.normal(scale=1e-6, size=(20, 5, 3))
    np.testing.assert_allclose(best_rotation(rest, posed), truth, atol=1e-5)
    mirrored = posed * np.array([-1.0, 1.0, 1.0])  # the best fit would be a reflection
    assert _is_rotation(best_rotation(rest, mirrored))


def test_slerp_matrices_is_the_quaternion_slerp():
    rng = np.random.default_rng(2)
    r0, r1 = axis_angle_to_matrix(rng.normal(size=(10, 3))), axis_angle_to_matrix(rng.normal(size=(10, 3)))
    w = rng.uniform(size=10)
    expected = quaternion_to_matrix(quaternion_slerp(matrix_to_quaternion(r0), matrix_to_quaternion(r1), w))
    np.testing.assert_allclose(slerp_matrices(r0, r1, w), expected, atol=1e-12)
    np.testing.assert_allclose(slerp_matrices(r0, r1, 0.0), r0, atol=1e-9)
    np.testing.assert_allclose(slerp_matrices(r0, r1, 1.0), r1, atol=1e-9)
