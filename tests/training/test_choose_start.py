"""The rules that pick a model's default start codes and temperatures (training.choose_start)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import DanceError
from training.choose_start import candidate_starts, choose_start, pick_start, pick_temperature


def test_candidates_are_the_most_common_first_pairs():
    up = np.array([[5, 1], [5, 2], [7, 3], [5, 4], [7, 5], [9, 6]])
    down = np.array([[1, 0], [1, 0], [2, 0], [1, 0], [2, 0], [1, 0]])
    assert candidate_starts(up, down, 2) == [(5, 1), (7, 2)]
    assert candidate_starts(up, down, 10) == [(5, 1), (7, 2), (9, 1)]


def test_pick_is_the_closest_speed_among_starts_whose_feet_do_not_slide_more():
    rows = [
        {"start": [1, 1], "speed": 0.3, "skating": 0.01},  # barely moves
        {"start": [2, 2], "speed": 1.2, "skating": 0.9},  # the closest speed, but its feet slide
        {"start": [3, 3], "speed": 0.7, "skating": 0.4},
        {"start": [4, 4], "speed": 2.0, "skating": 0.3},  # too fast: log ratio 0.59 vs 0.46 for 0.7
    ]
    assert pick_start(rows, speed_target=1.1, skating_limit=0.5)["start"] == [3, 3]
    # nothing qualifies: the one whose feet slide least
    assert pick_start(rows[1:2] + rows[3:], speed_target=1.1, skating_limit=0.1)["start"] == [4, 4]


def test_the_temperature_is_the_lowest_that_reaches_the_speed():
    rows = [
        {"temperature": 1.0, "speed": 0.80, "skating": 0.1},
        {"temperature": 1.1, "speed": 0.93, "skating": 0.2},  # within 10 %: the lowest such one wins
        {"temperature": 1.3, "speed": 1.00, "skating": 0.2},  # exact, but more random than needed
        {"temperature": 1.5, "speed": 1.02, "skating": 0.6},  # its feet slide
    ]
    assert pick_temperature(rows, speed_target=1.0, skating_limit=0.3)["temperature"] == 1.1
    # none within 10 %: the closest speed among those whose feet do not slide more
    assert pick_temperature(rows[:1] + rows[3:], speed_target=1.0, skating_limit=0.3)["temperature"] == 1.0
    assert pick_temperature(rows, speed_target=1.4, skating_limit=0.3)["temperature"] == 1.3


def test_bad_requests_are_refused(tmp_path):
    with pytest.raises(DanceError, match="song"):
        choose_start(tmp_path, tmp_path / "gpt.yaml", [])
    with pytest.raises(DanceError, match="not found"):
        choose_start(tmp_path, tmp_path / "gpt.yaml", [tmp_path / "missing.ogg"])
