"""The parity bound of the golden tests: wide enough for another CPU's float32 rounding, narrow enough to
catch a parity bug."""

from __future__ import annotations

import numpy as np
import pytest

from tests.engine.golden import assert_float32_parity, assert_same_argmax


def test_another_blas_kernels_rounding_passes_and_a_real_difference_fails(golden_io) -> None:
    golden = golden_io["window_logits_up"]  # (2, 29, 64), magnitude 8.5
    rng = np.random.default_rng(0)
    # What an Intel Xeon's AVX-512 kernels gave: up to 6.0e-5 off on about half the elements.
    intel_like = golden + rng.choice([-6.0e-5, 0.0, 6.0e-5], size=golden.shape).astype(np.float32)
    assert_float32_parity(intel_like, golden, "intel-like")
    assert_same_argmax(intel_like, golden, "intel-like")
    with pytest.raises(AssertionError):  # the old fixed 1e-5 refused exactly this
        np.testing.assert_allclose(intel_like, golden, rtol=0, atol=1e-5)
    for bug in (1e-3, 1e-2):  # e.g. a missing bias or a mask off by one token
        wrong = golden.copy()
        wrong[0, 3, 5] += bug
        with pytest.raises(AssertionError):
            assert_float32_parity(wrong, golden, "bug")


def test_a_different_best_code_fails_even_within_the_bound(golden_io) -> None:
    golden = golden_io["window_logits_down"]
    top2 = np.sort(golden, axis=-1)[..., -2:]
    gap = top2[..., 1] - top2[..., 0]
    b, t = np.unravel_index(np.argmax(gap), gap.shape)
    swapped = golden.copy()
    best, second = np.argsort(golden[b, t])[-1], np.argsort(golden[b, t])[-2]
    swapped[b, t, best], swapped[b, t, second] = golden[b, t, second], golden[b, t, best]
    with pytest.raises(AssertionError):
        assert_same_argmax(swapped, golden, "swapped")
