"""Rotation helpers in NumPy: axis-angle, matrices and unit quaternions (w, x, y, z).

Every function works on arrays with arbitrary leading dimensions. Quaternions are scalar-first,
which is the convention of Blender's ``rotation_quaternion`` and of ``mathutils.Quaternion``.
"""

from __future__ import annotations

import numpy as np

_EPS = 1e-12


def axis_angle_to_matrix(aa: np.ndarray) -> np.ndarray:
    """Rodrigues' formula. (..., 3) -> (..., 3, 3)."""
    aa = np.asarray(aa, dtype=np.float64)
    angle = np.linalg.norm(aa, axis=-1, keepdims=True)  # (..., 1)
    axis = aa / np.maximum(angle, _EPS)
    x, y, z = axis[..., 0], axis[..., 1], axis[..., 2]
    c = np.cos(angle[..., 0])
    s = np.sin(angle[..., 0])
    t = 1.0 - c
    m = np.stack(
        [
            t * x * x + c, t * x * y - s * z, t * x * z + s * y,
            t * x * y + s * z, t * y * y + c, t * y * z - s * x,
            t * x * z - s * y, t * y * z + s * x, t * z * z + c,
        ],
        axis=-1,
    )
    return m.reshape(aa.shape[:-1] + (3, 3))


def matrix_to_quaternion(m: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) -> unit quaternions (..., 4), w >= 0 (Shepperd's method)."""
    m = np.asarray(m, dtype=np.float64)
    shape = m.shape[:-2]
    m = m.reshape(-1, 3, 3)
    tr = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    q = np.empty((m.shape[0], 4))
    # Pick the numerically largest of w, x, y, z as the pivot per matrix.
    cand = np.stack([tr, m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]], axis=1)
    k = np.argmax(cand, axis=1)
    for case in range(4):
        sel = k == case
        if not np.any(sel):
            continue
        a = m[sel]
        if case == 0:
            s = np.sqrt(np.maximum(1.0 + tr[sel], _EPS)) * 2
            q[sel] = np.stack([0.25 * s, (a[:, 2, 1] - a[:, 1, 2]) / s, (a[:, 0, 2] - a[:, 2, 0]) / s,
                               (a[:, 1, 0] - a[:, 0, 1]) / s], axis=1)
        elif case == 1:
            s = np.sqrt(np.maximum(1.0 + a[:, 0, 0] - a[:, 1, 1] - a[:, 2, 2], _EPS)) * 2
            q[sel] = np.stack([(a[:, 2, 1] - a[:, 1, 2]) / s, 0.25 * s, (a[:, 0, 1] + a[:, 1, 0]) / s,
                               (a[:, 0, 2] + a[:, 2, 0]) / s], axis=1)
        elif case == 2:
            s = np.sqrt(np.maximum(1.0 + a[:, 1, 1] - a[:, 0, 0] - a[:, 2, 2], _EPS)) * 2
            q[sel] = np.stack([(a[:, 0, 2] - a[:, 2, 0]) / s, (a[:, 0, 1] + a[:, 1, 0]) / s, 0.25 * s,
                               (a[:, 1, 2] + a[:, 2, 1]) / s], axis=1)
        else:
            s = np.sqrt(np.maximum(1.0 + a[:, 2, 2] - a[:, 0, 0] - a[:, 1, 1], _EPS)) * 2
            q[sel] = np.stack([(a[:, 1, 0] - a[:, 0, 1]) / s, (a[:, 0, 2] + a[:, 2, 0]) / s,
                               (a[:, 1, 2] + a[:, 2, 1]) / s, 0.25 * s], axis=1)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    q[q[:, 0] < 0] *= -1
    return q.reshape(shape + (4,))


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """Unit quaternions (..., 4) w-first -> rotation matrices (..., 3, 3)."""
    q = np.asarray(q, dtype=np.float64)
    q = q / np.maximum(np.linalg.norm(q, axis=-1, keepdims=True), _EPS)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    m = np.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
            2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
            2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
        ],
        axis=-1,
    )
    return m.reshape(q.shape[:-1] + (3, 3))


def matrix_to_axis_angle(m: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) -> axis-angle (..., 3), angle in [0, pi]."""
    q = matrix_to_quaternion(m)
    return quaternion_to_axis_angle(q)


def quaternion_to_axis_angle(q: np.ndarray) -> np.ndarray:
    q = np.asarray(q, dtype=np.float64)
    q = np.where(q[..., :1] < 0, -q, q)
    v = q[..., 1:]
    s = np.linalg.norm(v, axis=-1, keepdims=True)
    angle = 2.0 * np.arctan2(s, q[..., :1])
    return v / np.maximum(s, _EPS) * angle


def make_continuous(q: np.ndarray, axis: int = 0) -> np.ndarray:
    """Flip quaternion signs along ``axis`` (time) so consecutive keys lie in one hemisphere.

    Without this, linear interpolation between keys can spin the long way round. Vectorised: the sign
    of key t is the product of the signs of all neighbour dot products up to t.
    """
    q = np.moveaxis(np.array(q, dtype=np.float64, copy=True), axis, 0)
    if q.shape[0] < 2:
        return np.moveaxis(q, 0, axis)
    dots = np.sum(q[1:] * q[:-1], axis=-1)  # (T-1, ...)
    step = np.where(dots < 0, -1.0, 1.0)
    sign = np.concatenate([np.ones_like(step[:1]), np.cumprod(step, axis=0)], axis=0)  # (T, ...)
    q *= sign[..., None]
    return np.moveaxis(q, 0, axis)


def quaternion_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product a * b (rotation b first, then a) of w-first quaternions (..., 4)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        axis=-1,
    )


def quaternion_conjugate(q: np.ndarray) -> np.ndarray:
    """Inverse of a unit quaternion (..., 4)."""
    q = np.array(q, dtype=np.float64, copy=True)
    q[..., 1:] *= -1
    return q


def quaternion_slerp(q0: np.ndarray, q1: np.ndarray, t: np.ndarray | float) -> np.ndarray:
    """Spherical interpolation between unit quaternions (..., 4) along the short arc; t broadcasts over (...)."""
    q0 = np.asarray(q0, dtype=np.float64)
    q1 = np.asarray(q1, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)[..., None]
    dot = np.sum(q0 * q1, axis=-1, keepdims=True)
    q1 = np.where(dot < 0, -q1, q1)
    dot = np.abs(dot)
    theta = np.arccos(np.clip(dot, -1.0, 1.0))
    sin_theta = np.sin(theta)
    near = sin_theta < 1e-6  # nearly equal keys: linear interpolation is exact enough and stable
    safe = np.where(near, 1.0, sin_theta)
    w0 = np.where(near, 1.0 - t, np.sin((1.0 - t) * theta) / safe)
    w1 = np.where(near, t, np.sin(t * theta) / safe)
    out = w0 * q0 + w1 * q1
    return out / np.linalg.norm(out, axis=-1, keepdims=True)


def slerp_matrices(r_from: np.ndarray, r_to: np.ndarray, weight: np.ndarray | float) -> np.ndarray:
    """Slerp between rotation matrices (..., 3, 3) with weights broadcasting over (...)."""
    return quaternion_to_matrix(quaternion_slerp(matrix_to_quaternion(r_from), matrix_to_quaternion(r_to), weight))


# --- rotations from directions and point sets ----------------------------------------------------------
def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def _skew(v: np.ndarray) -> np.ndarray:
    """(..., 3) -> cross-product matrices (..., 3, 3)."""
    z = np.zeros(v.shape[:-1])
    x, y, w = v[..., 0], v[..., 1], v[..., 2]
    return np.stack([z, -w, y, w, z, -x, -y, x, z], axis=-1).reshape(v.shape[:-1] + (3, 3))


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Shortest-arc rotations (..., 3, 3) turning directions ``a`` onto ``b`` (..., 3; any length); for
    opposite directions a half turn about an axis perpendicular to ``a``."""
    a = _unit(np.asarray(a, dtype=np.float64))
    b = _unit(np.asarray(b, dtype=np.float64))
    a, b = np.broadcast_arrays(a, b)
    v = np.cross(a, b)
    c = np.sum(a * b, axis=-1)
    k = _skew(v)
    eye = np.broadcast_to(np.eye(3), k.shape)
    opposite = c < -1.0 + 1e-9
    r = eye + k + (k @ k) / np.maximum(1.0 + c, 1e-9)[..., None, None]
    if np.any(opposite):
        # Half turn about any axis perpendicular to a: the least-aligned coordinate axis crossed with a.
        ao = a[opposite]
        helper = np.eye(3)[np.argmin(np.abs(ao), axis=-1)]
        u = _unit(np.cross(ao, helper))
        r[opposite] = 2.0 * u[..., :, None] * u[..., None, :] - np.eye(3)
    return r


def best_rotation(rest: np.ndarray, posed: np.ndarray) -> np.ndarray:
    """Kabsch: the rotations R (T, 3, 3) minimising sum_i |R rest_i - posed_i|^2 for rest (K, 3) and
    posed (T, K, 3), never a reflection. The vectors are taken as they are: to fit point sets rather
    than directions from a common origin, subtract each set's centroid first."""
    h = np.einsum("ki,tkj->tij", rest, posed)  # (T, 3, 3) cross-covariance
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(vt.transpose(0, 2, 1) @ u.transpose(0, 2, 1)))
    d = np.where(d == 0, 1.0, d)
    fix = np.ones((h.shape[0], 3))
    fix[:, 2] = d  # no reflections
    return vt.transpose(0, 2, 1) @ (fix[:, :, None] * u.transpose(0, 2, 1))


# --- Euler angles (BVH) ------------------------------------------------------------------------------
# An order string such as "ZXY" means R = Rz(a) @ Rx(b) @ Ry(c): the BVH channel order, each rotation about
# the axes of the frame produced by the previous one (intrinsic).
_AXIS = {"X": 0, "Y": 1, "Z": 2}


def _check_order(order: str) -> tuple[int, int, int]:
    order = order.upper()
    if len(order) != 3 or sorted(order) != ["X", "Y", "Z"]:
        raise ValueError(f"Euler order must be a permutation of 'XYZ', got {order!r}")
    return _AXIS[order[0]], _AXIS[order[1]], _AXIS[order[2]]


def axis_rotation_matrix(axis: int, angle: np.ndarray) -> np.ndarray:
    """Rotation by ``angle`` (radians, (...,)) about coordinate axis 0/1/2 -> (..., 3, 3)."""
    angle = np.asarray(angle, dtype=np.float64)
    c, s = np.cos(angle), np.sin(angle)
    m = np.zeros(angle.shape + (3, 3))
    i, j = (axis + 1) % 3, (axis + 2) % 3
    m[..., axis, axis] = 1.0
    m[..., i, i] = c
    m[..., j, j] = c
    m[..., i, j] = -s
    m[..., j, i] = s
    return m


def euler_to_matrix(angles: np.ndarray, order: str) -> np.ndarray:
    """Euler angles (..., 3) in radians, listed in ``order`` (e.g. "ZXY") -> rotation matrices (..., 3, 3)."""
    axes = _check_order(order)
    angles = np.asarray(angles, dtype=np.float64)
    m = axis_rotation_matrix(axes[0], angles[..., 0])
    m = m @ axis_rotation_matrix(axes[1], angles[..., 1])
    return m @ axis_rotation_matrix(axes[2], angles[..., 2])


def matrix_to_euler(m: np.ndarray, order: str) -> np.ndarray:
    """Rotation matrices (..., 3, 3) -> Euler angles (..., 3) in radians such that euler_to_matrix gives m back.

    The middle angle lies in [-pi/2, pi/2]. At gimbal lock (middle angle = +-pi/2) the last angle is set to 0.
    """
    i, j, k = _check_order(order)
    m = np.asarray(m, dtype=np.float64)
    # +1 for cyclic orders (XYZ, YZX, ZXY), -1 for the others.
    s = 1.0 if (j - i) % 3 == 1 else -1.0
    sin_b = np.clip(s * m[..., i, k], -1.0, 1.0)
    b = np.arcsin(sin_b)
    cos_b = np.sqrt(m[..., i, i] ** 2 + m[..., i, j] ** 2)
    locked = cos_b < 1e-9
    a = np.where(locked, np.arctan2(s * m[..., k, j], m[..., j, j]), np.arctan2(-s * m[..., j, k], m[..., k, k]))
    c = np.where(locked, 0.0, np.arctan2(-s * m[..., i, j], m[..., i, i]))
    b = np.where(locked, np.arctan2(s * m[..., i, k], cos_b), b)
    return np.stack([a, b, c], axis=-1)


def make_euler_continuous(angles: np.ndarray, axis: int = 0) -> np.ndarray:
    """Pick, per key along ``axis`` (time), the equivalent Euler triple closest to the previous key.

    Every rotation has two Tait-Bryan triples, (a, b, c) and (a + pi, pi - b, c + pi), each up to 2 pi per angle;
    choosing the nearest avoids 360-degree spins when Euler curves are interpolated (BVH in Blender).
    """
    e = np.moveaxis(np.array(angles, dtype=np.float64, copy=True), axis, 0)  # (T, ..., 3)
    two_pi = 2.0 * np.pi
    for t in range(1, e.shape[0]):
        prev = e[t - 1]
        first = e[t]
        second = first + np.array([np.pi, 0.0, np.pi])
        second[..., 1] = np.pi - first[..., 1]
        cands = []
        for cand in (first, second):
            cand = cand + two_pi * np.round((prev - cand) / two_pi)
            cands.append((cand, np.sum((cand - prev) ** 2, axis=-1)))
        use_second = cands[1][1] < cands[0][1]
        e[t] = np.where(use_second[..., None], cands[1][0], cands[0][0])
    return np.moveaxis(e, 0, axis)
