"""OpenPose JSON (sd-webui-openpose-editor's format) and the pose map renderer."""
from __future__ import annotations

import numpy as np
import pytest

from webui.generation.openpose import COLORS, LIMBS, PoseError, parse_pose, pose_json, render_pose, render_pose_json

PERSON = [(100, 40), (100, 70), (75, 70), (65, 110), (60, 150), (125, 70), (135, 110), (140, 150), (85, 150),
          (83, 200), (82, 240), (115, 150), (117, 200), (118, 240), (94, 35), (106, 35), (88, 38), (112, 38)]


def test_round_trip_and_normalised_coordinates():
    data = pose_json(200, 260, [list(PERSON)])
    width, height, people = parse_pose(data)
    assert (width, height) == (200, 260) and people[0] == [tuple(map(float, p)) for p in PERSON]
    flat = [v for x, y in PERSON for v in (x / 200, y / 260, 1)]
    _, _, normalised = parse_pose({"canvas_width": 200, "canvas_height": 260, "people": [{"pose_keypoints_2d": flat}]})
    assert np.allclose(np.array(normalised[0]), np.array(PERSON))
    missing = list(PERSON)
    missing[4] = None
    assert parse_pose(pose_json(200, 260, [missing]))[2][0][4] is None


def test_render_uses_the_standard_limb_and_joint_colours():
    image = render_pose(200, 260, [list(PERSON)])
    assert image.shape == (260, 200, 3) and image[5, 5].tolist() == [0, 0, 0]
    for point, colour in zip(PERSON, COLORS):
        assert image[point[1], point[0]].tolist() == list(colour)  # joints drawn last, full colour
    (a, b), colour = LIMBS[3], COLORS[3]  # right elbow -> right wrist, yellow at 60 %
    mid = ((PERSON[a][0] + PERSON[b][0]) // 2, (PERSON[a][1] + PERSON[b][1]) // 2)
    assert image[mid[1], mid[0]].tolist() == [int(c * 0.6) for c in colour]


@pytest.mark.parametrize("bad,words", [("{", "not JSON"), ({"canvas_width": 5}, "outside"),
                                       ({"people": [{"pose_keypoints_2d": [1, 2]}]}, "x, y, confidence")])
def test_bad_json_is_refused(bad, words):
    with pytest.raises(PoseError, match=words):
        render_pose_json(bad)
