"""OpenPose skeletons: the pose JSON sd-webui-openpose-editor reads and writes, and the pose map.

JSON (OpenPose's own output format, which the editor extensions exchange)::

    {"canvas_width": 512, "canvas_height": 512,
     "people": [{"pose_keypoints_2d": [x0, y0, c0, x1, y1, c1, ...],   # 18 body points, COCO order
                 "face_keypoints_2d": null, "hand_left_keypoints_2d": null, "hand_right_keypoints_2d": null}]}

Coordinates are pixels (all values <= 1 are read as fractions of the canvas, as the
ControlNet extension does); a point with confidence 0 is absent. The map is drawn the way the
ControlNet 1.1 annotator draws bodies, which OpenPose ControlNets were trained on: black
background, each of the 17 limbs an ellipse 4 px wide in its standard colour at 60 %, then each
joint a 4 px disc in its colour.
"""
from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

KEYPOINTS = ("nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
             "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
             "right_eye", "left_eye", "right_ear", "left_ear")
# Limbs as pairs of keypoint indices (0-based), in the annotator's order (colours follow this order).
LIMBS = ((1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13),
         (1, 0), (0, 14), (14, 16), (0, 15), (15, 17))
COLORS = ((255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0), (0, 255, 0),
          (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255),
          (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85))
STICK_WIDTH = 4
MAX_CANVAS = 4096


class PoseError(ValueError):
    """The pose JSON is not usable; the message says what is wrong."""


Point = tuple[float, float] | None


def parse_pose(data: Any) -> tuple[int, int, list[list[Point]]]:
    """(width, height, people) from pose JSON (text or dict); each person is 18 points or None."""
    if isinstance(data, (str, bytes)):
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise PoseError(f"not JSON: {exc}") from None
    if isinstance(data, list) and data and isinstance(data[0], dict):  # a list of frames: take the first
        data = data[0]
    if not isinstance(data, dict):
        raise PoseError("expected an object with canvas_width, canvas_height and people")
    try:
        width, height = int(data.get("canvas_width", 512)), int(data.get("canvas_height", 512))
    except (TypeError, ValueError):
        raise PoseError("canvas_width and canvas_height must be whole numbers") from None
    if not (8 <= width <= MAX_CANVAS and 8 <= height <= MAX_CANVAS):
        raise PoseError(f"canvas size {width}x{height} is outside 8..{MAX_CANVAS}")
    people_raw = data.get("people", [])
    if not isinstance(people_raw, list):
        raise PoseError("people must be a list")
    values = [v for person in people_raw if isinstance(person, dict)
              for v in (person.get("pose_keypoints_2d") or [])]
    normalized = bool(values) and all(isinstance(v, (int, float)) and abs(v) <= 1.0 for v in values)
    people = []
    for n, person in enumerate(people_raw):
        flat = person.get("pose_keypoints_2d") if isinstance(person, dict) else None
        if not isinstance(flat, list) or len(flat) % 3 or not all(isinstance(v, (int, float)) for v in flat):
            raise PoseError(f"people[{n}].pose_keypoints_2d must be a list of x, y, confidence numbers")
        points: list[Point] = []
        for k in range(min(len(flat) // 3, len(KEYPOINTS))):
            x, y, c = flat[3 * k:3 * k + 3]
            if c <= 0 or not (math.isfinite(x) and math.isfinite(y)):
                points.append(None)
            else:
                points.append((x * width, y * height) if normalized else (float(x), float(y)))
        points += [None] * (len(KEYPOINTS) - len(points))
        people.append(points)
    return width, height, people


def pose_json(width: int, height: int, people: list[list[Point]]) -> dict:
    """The editor's JSON for a canvas and its people (pixels; absent points as 0, 0, 0)."""
    out = []
    for points in people:
        flat: list[float] = []
        for p in points:
            flat += [0.0, 0.0, 0.0] if p is None else [round(p[0], 2), round(p[1], 2), 1.0]
        out.append({"pose_keypoints_2d": flat, "face_keypoints_2d": None, "hand_left_keypoints_2d": None,
                    "hand_right_keypoints_2d": None})
    return {"canvas_width": int(width), "canvas_height": int(height), "people": out}


def render_pose(width: int, height: int, people: list[list[Point]]) -> np.ndarray:
    """The OpenPose map (RGB uint8 HxWx3) of the people on a black canvas."""
    import cv2

    canvas = np.zeros((height, width, 3), np.uint8)
    for points in people:
        for (a, b), color in zip(LIMBS, COLORS):
            if points[a] is None or points[b] is None:
                continue
            (x0, y0), (x1, y1) = points[a], points[b]
            length = math.hypot(x0 - x1, y0 - y1)
            angle = math.degrees(math.atan2(y0 - y1, x0 - x1))
            polygon = cv2.ellipse2Poly((int((x0 + x1) / 2), int((y0 + y1) / 2)), (int(length / 2), STICK_WIDTH),
                                       int(angle), 0, 360, 1)
            cv2.fillConvexPoly(canvas, polygon, [int(c * 0.6) for c in color])
        for point, color in zip(points, COLORS):
            if point is not None:
                cv2.circle(canvas, (int(point[0]), int(point[1])), 4, color, thickness=-1)
    return canvas


def render_pose_json(data: Any) -> np.ndarray:
    """Parse pose JSON and draw it."""
    width, height, people = parse_pose(data)
    return render_pose(width, height, people)
