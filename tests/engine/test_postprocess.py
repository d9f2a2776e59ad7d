import numpy as np
import pytest

from engine import skeleton as sk
from engine.errors import InvalidOptionError
from engine.postprocess import (
    contact_frames,
    ground_feet,
    lock_feet,
    plant_feet,
    resample_joints,
    resample_rotations,
    sole_height,
)
from engine.rotation import axis_angle_to_matrix, matrix_to_quaternion, quaternion_to_matrix
from engine.skeleton import ANKLE_ABOVE_SOLE, TOE_ABOVE_SOLE

FPS = 60


def _walk(num_frames=600):
    """A synthetic walk (legs swinging, moving forward) whose lowest sole touches y = 0 on every frame."""
    t = np.arange(num_frames) / FPS
    phase = 2 * np.pi * t
    aa = np.zeros((num_frames, 24, 3))
    aa[:, 1, 0], aa[:, 2, 0] = -0.4 * np.sin(phase), 0.4 * np.sin(phase)
    aa[:, 4, 0], aa[:, 5, 0] = 0.3 * (1 + np.sin(phase + 1)), 0.3 * (1 - np.sin(phase + 1))
    translation = np.zeros((num_frames, 3))
    translation[:, 2] = 1.2 * t
    joints = sk.forward_kinematics(aa, translation)
    joints[:, :, 1] -= sole_height(joints)[:, None]
    return joints


def _drift(num_frames):
    t = np.arange(num_frames) / FPS
    return 0.3 + 0.15 * np.sin(2 * np.pi * t / 7) + 0.04 * t  # metres: slow wander plus a steady climb


def _standing_with_jump(num_frames=600, start=200, flight=30, height=0.35):
    joints = np.repeat(sk.REST_JOINTS[None], num_frames, axis=0)
    joints[:, :, 1] -= sole_height(joints)[:, None]
    k = np.arange(flight)
    lift = np.zeros(num_frames)
    lift[start : start + flight] = height * (1 - ((k - (flight - 1) / 2) / ((flight + 1) / 2)) ** 2)
    joints[:, :, 1] += lift[:, None]
    return joints, lift


def test_sole_height_accounts_for_joint_heights_above_the_sole():
    rest = sk.REST_JOINTS[None]
    # Standing flat, toes and ankles agree on where the sole is (within 1 mm).
    toe_sole = rest[0, [10, 11], 1] - TOE_ABOVE_SOLE
    ankle_sole = rest[0, [7, 8], 1] - ANKLE_ABOVE_SOLE
    assert np.abs(toe_sole - ankle_sole).max() < 1e-3
    assert sole_height(rest)[0] == pytest.approx(min(toe_sole.min(), ankle_sole.min()))
    # Toes raised high (heel stand): the ankle decides.
    heel = rest.copy()
    heel[0, [10, 11], 1] += 0.2
    assert sole_height(heel)[0] == pytest.approx(ankle_sole.min())


def test_drifting_walk_is_grounded():
    walk = _walk()
    drifting = walk.copy()
    drifting[:, :, 1] += _drift(len(walk))[:, None]
    grounded = ground_feet(drifting, fps=FPS)
    sole = sole_height(grounded)
    assert sole.min() >= 0.0  # never below the floor
    assert np.median(sole) < 0.002 and sole.max() < 0.01  # one foot is always down in a walk
    assert (grounded[:, sk.FOOT_JOINTS, 1] >= 0).all()
    # Only the height changed, by one shift per frame for the whole body.
    np.testing.assert_array_equal(grounded[:, :, [0, 2]], drifting[:, :, [0, 2]])
    shift = grounded[:, :, 1] - drifting[:, :, 1]
    np.testing.assert_allclose(shift, np.broadcast_to(shift[:, :1], shift.shape), atol=1e-12)
    # The correction is smooth: no jerk larger than the drift itself has.
    assert np.abs(np.diff(shift[:, 0], n=2)).max() < 1e-3


def test_a_jump_stays_a_jump():
    jumping, lift = _standing_with_jump()
    drifting = jumping.copy()
    drifting[:, :, 1] += _drift(len(jumping))[:, None]
    sole = sole_height(ground_feet(drifting, fps=FPS))
    assert sole.max() == pytest.approx(lift.max(), abs=0.02)
    np.testing.assert_allclose(sole[lift > 0], lift[lift > 0], atol=0.02)
    assert np.abs(sole[lift == 0]).max() < 0.01
    assert sole.min() >= 0.0
    contact = contact_frames(sole_height(drifting), FPS)
    assert not contact[lift > 0.05].any() and contact[lift == 0].mean() > 0.95


def test_fast_steady_drift_is_not_mistaken_for_a_flight():
    # Generated motion can rise for seconds on end (integrated root velocity); nobody flies that long.
    walk = _walk(360)
    climbing = walk.copy()
    climbing[:, :, 1] += 1.5 * np.arange(360)[:, None] / FPS
    sole = sole_height(ground_feet(climbing, fps=FPS))
    assert sole.min() >= 0 and sole.max() < 0.1  # the first/last half second lack context on one side
    assert sole[FPS // 2 : -FPS // 2].max() < 0.005


def test_sinking_clip_is_lifted_and_floating_clip_lowered():
    walk = _walk(240)
    for offset in (-0.5, 0.8):
        moved = walk.copy()
        moved[:, :, 1] += offset
        np.testing.assert_allclose(ground_feet(moved, fps=FPS), walk, atol=1e-9)


def test_real_clips_end_on_the_floor_and_keep_their_hops(aistpp_slices_dir):
    for path in sorted(aistpp_slices_dir.glob("*.csv")):
        joints = sk.zup_to_yup(np.loadtxt(path, delimiter=",").reshape(-1, 24, 3))  # floor at y ~ 0.9 here
        raw = sole_height(joints)
        sole = sole_height(ground_feet(joints, fps=30))
        assert sole.min() >= 0.0
        contact = contact_frames(raw, 30)
        assert contact.mean() > 0.4, path.name
        assert np.median(sole[contact]) < 0.015, path.name
        # Break and hip-hop clips hop by 10-16 cm: the hops keep most of their height.
        if raw.max() - raw.min() > 0.1:
            assert sole.max() > 0.6 * (raw.max() - raw.min()), path.name
        else:  # jazz and krump keep a foot down throughout: most of their few cm of wander goes
            assert sole.max() < 0.5 * (raw.max() - raw.min()), path.name


def test_ground_feet_rejects_bad_input():
    with pytest.raises(sk.InvalidMotionError):
        ground_feet(np.zeros((10, 24, 2)))
    with pytest.raises(InvalidOptionError):
        ground_feet(_walk(20), fps=0)


def test_resample_joints_round_trip_and_counts():
    t = np.arange(300) / 60
    signal = np.stack([np.sin(2 * np.pi * 1.5 * t), np.cos(2 * np.pi * 0.7 * t), t], axis=-1)  # (300, 3)
    joints = np.repeat(signal[:, None], 24, axis=1)  # (300, 24, 3)
    half = resample_joints(joints, 60, 30)
    assert half.shape == (150, 24, 3)
    np.testing.assert_allclose(half, joints[::2], atol=1e-12)  # 30 fps frames are every other 60 fps frame
    back = resample_joints(half, 30, 60)
    assert back.shape == (300, 24, 3)
    # Linear interpolation of a 1.5 Hz sine sampled at 30 fps: error below (w dt)^2 / 8.
    bound = (2 * np.pi * 1.5 / 30) ** 2 / 8
    assert np.abs(back[:-1] - joints[:-1]).max() < bound
    assert resample_joints(joints, 60, 24).shape[0] == 120  # 5 s at 24 fps
    assert resample_joints(joints[:7], 60, 60).shape[0] == 7


def test_resample_rotations_is_slerp():
    angles = np.linspace(0, 3 * np.pi, 91)  # constant angular velocity about a fixed axis, more than a full turn
    axis = np.array([0.3, -0.5, 0.81])
    axis /= np.linalg.norm(axis)
    quats = matrix_to_quaternion(axis_angle_to_matrix(angles[:, None] * axis))[:, None]  # (91, 1, 4)
    up = resample_rotations(quats, 30, 60)
    assert up.shape == (182, 1, 4)
    expected = axis_angle_to_matrix(np.minimum(np.arange(182) / 2, 90)[:, None] * (angles[1] * axis))[:, None]
    np.testing.assert_allclose(quaternion_to_matrix(up), expected, atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(up, axis=-1), 1.0, atol=1e-12)
    assert (np.sum(up[1:] * up[:-1], axis=-1) > 0).all()
    down = resample_rotations(up, 60, 30)
    np.testing.assert_allclose(quaternion_to_matrix(down), quaternion_to_matrix(quats), atol=1e-9)
    with pytest.raises(InvalidOptionError):
        resample_rotations(quats, 30, -1)


def test_lock_feet_stops_a_planted_foot_sliding_and_keeps_the_pose(data_dir):
    """A real salsa take with the whole body dragged sideways at 0.8 m/s: the feet skate. Locked, the
    drag is gone from the planted foot, poses and heights are the take's, and the dancer is not shaken."""
    from training.data import load_bvh_clip
    from training.metrics.physical import foot_skating_ratio, jitter

    take = load_bvh_clip(data_dir / "cmu_salsa_duet" / "60_02.bvh").joints[:1200].astype(np.float64)
    dragged = take.copy()
    dragged[:, :, 0] += 0.8 * np.arange(len(take))[:, None] / 60.0
    locked = lock_feet(dragged)
    assert foot_skating_ratio(dragged, 60) > 2 * foot_skating_ratio(take, 60)
    assert foot_skating_ratio(locked, 60) <= 1.05 * foot_skating_ratio(take, 60)
    np.testing.assert_allclose(locked - locked[:, :1], dragged - dragged[:, :1], atol=1e-9)  # same poses
    np.testing.assert_array_equal(locked[..., 1], dragged[..., 1])  # heights untouched
    assert jitter(locked, 60) <= 1.01 * jitter(dragged, 60)
    # the drag was taken out, not the dancing: the locked root ends near the take's, far from the dragged one
    drift = lambda j: np.linalg.norm(j[-1, 0, [0, 2]] - take[-1, 0, [0, 2]])  # noqa: E731
    assert drift(locked) < 0.25 * drift(dragged)


def test_lock_feet_leaves_a_body_in_the_air_alone():
    flying = np.tile(sk.REST_JOINTS, (60, 1, 1)) + [0.0, 1.5, 0.0]  # feet 0.4 m above the floor
    flying[:, :, 0] += np.linspace(0, 1, 60)[:, None]
    np.testing.assert_array_equal(lock_feet(flying), flying)
    with pytest.raises(InvalidOptionError, match="foot lock height"):
        lock_feet(flying, height=0.0)


def _standing(num_frames: int) -> np.ndarray:
    """The rest pose standing on y = 0 with slightly bent knees (so a leg can reach both ways)."""
    aa = np.zeros((num_frames, 24, 3))
    aa[:, 1, 0] = aa[:, 2, 0] = -0.25  # hips flexed
    aa[:, 4, 0] = aa[:, 5, 0] = 0.5  # knees bent
    joints = sk.forward_kinematics(aa)
    joints[:, :, 1] -= sole_height(joints)[:, None]
    return joints


def test_plant_feet_keeps_a_swaying_bodys_feet_on_their_spots():
    """A body swaying 4 cm side to side with rigid legs: its feet slide on the floor (8 cm). Planted,
    both feet stay on one spot (within 1 mm) while the knees bend to reach; pelvis, upper body and bone
    lengths are the body's own and no foot goes below the floor."""
    body = _standing(240)
    body[:, :, 0] += 0.04 * np.sin(2 * np.pi * 1.5 * np.arange(240) / FPS)[:, None]  # up to 0.38 m/s
    planted = plant_feet(body)
    for joint in (*sk.ANKLES, *sk.TOES):
        spread = np.ptp(planted[:, joint, [0, 2]], axis=0)
        assert spread.max() < 1e-3, (joint, spread)
    untouched = [j for j in range(24) if j not in (4, 5, 7, 8, 10, 11)]  # all but knees, ankles, toes
    np.testing.assert_array_equal(planted[:, untouched], body[:, untouched])
    np.testing.assert_allclose(sk.bone_lengths(planted), sk.bone_lengths(body), atol=1e-9)
    assert sole_height(planted).min() >= -1e-9
    # the knees bent the way they were bent (forward), not backwards
    for hip, knee, ankle in sk.LEGS:
        mid = (planted[:, hip] + planted[:, ankle]) / 2
        ahead = np.sum((planted[:, knee] - mid) * sk.facing_direction(planted), axis=-1)
        assert (ahead > 0).all()


def test_plant_feet_turns_a_slide_into_a_step():
    """A body gliding 0.4 m forward in 0.5 s between two stands, legs rigid: both feet skate along the
    floor. Planted, each foot stands still before and after and travels lifted in between (a step of at
    least 3 cm at its middle), landing where the glide took it."""
    from training.metrics.physical import foot_skating_ratio

    n = 180
    body = _standing(n)
    s = np.clip((np.arange(n) - 60) / 30.0, 0.0, 1.0)
    body[:, :, 2] += (0.4 * s * s * (3 - 2 * s))[:, None]
    planted = plant_feet(body)
    assert foot_skating_ratio(planted, FPS) < 0.5 * foot_skating_ratio(body, FPS)
    for ankle in sk.ANKLES:
        assert np.abs(planted[:50, ankle] - planted[0, ankle]).max() < 1e-3  # standing before
        assert np.abs(planted[100:, ankle] - planted[-1, ankle]).max() < 1e-3  # and after
        np.testing.assert_allclose(planted[-1, ankle, [0, 2]], body[-1, ankle, [0, 2]], atol=2e-3)
        assert planted[60:90, ankle, 1].max() - body[60:90, ankle, 1].max() >= 0.03  # lifted


def test_plant_feet_barely_changes_real_dance(data_dir):
    """A real salsa take keeps its dance: its legs move by under 3 cm at the median (a pivot on the
    ball of a foot is pinned too), its foot skating does not rise, it is at most a little shakier (the
    pinned pivots: 1.13x here), and every bone keeps its length."""
    from training.data import load_bvh_clip
    from training.metrics.physical import foot_skating_ratio, jitter

    take = ground_feet(load_bvh_clip(data_dir / "cmu_salsa_duet" / "61_05.bvh").joints[:1800].astype(np.float64))
    planted = plant_feet(take)
    moved = np.linalg.norm(planted - take, axis=-1)[:, [4, 5, 7, 8, 10, 11]]
    assert np.median(moved) < 0.03
    assert foot_skating_ratio(planted, FPS) <= foot_skating_ratio(take, FPS)
    assert jitter(planted, FPS) <= 1.15 * jitter(take, FPS)
    np.testing.assert_allclose(sk.bone_lengths(planted), sk.bone_lengths(take), atol=1e-9)


def test_plant_feet_leaves_a_body_in_the_air_alone_and_checks_its_options():
    flying = np.tile(sk.REST_JOINTS, (60, 1, 1)) + [0.0, 1.5, 0.0]
    flying[:, :, 0] += np.linspace(0, 1, 60)[:, None]
    np.testing.assert_array_equal(plant_feet(flying), flying)
    for bad in ({"fps": 0.0}, {"height": -1.0}, {"height": float("nan")}):
        with pytest.raises(InvalidOptionError, match="foot planting"):
            plant_feet(flying, **bad)
