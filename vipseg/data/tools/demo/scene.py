"""Compose a basketball scene back to front with an exact owner map.

``render_scene`` paints the court, then people and the ball from the far floor edge towards the
camera. Each painted pixel of the colour image is also written into an int32 owner map
(0 = background, k = instance k), so an occluded instance keeps only its visible pixels and no
pixel belongs to two instances. Camera effects (noise, blur, gain) touch the colour image only.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from vipseg.data.tools.demo.court import (COURT_LENGTH, COURT_WIDTH, MARGIN, PERSON_HEIGHT, Camera,
                                          random_camera, render_court)
from vipseg.data.tools.demo.people import (Outfit, colour_parts, draw_person, random_outfit,
                                           random_pose, team_outfits)

HUMAN, BALL = 1, 2  # category ids of the VIPriors files
BALL_DIAMETER = 0.24  # metres
BALL_COLOUR = (205.0, 95.0, 35.0)


@dataclass
class Scene:
    """A rendered scene: ``image`` uint8 RGB [H, W, 3]; ``owner`` int32 [H, W] (0 background,
    k >= 1 instance k); ``categories[k - 1]`` is the category id of instance k and
    ``outfits[k - 1]`` its outfit (team or referee; None for the ball)."""

    image: np.ndarray
    owner: np.ndarray
    categories: list[int]
    outfits: list[Outfit | None]


def overlap(top_left: tuple[int, int], crop_shape: tuple[int, ...],
            image_shape: tuple[int, ...]) -> tuple[tuple[slice, slice], tuple[slice, slice]] | None:
    """Slices (image, crop) of a crop placed at ``top_left`` (x, y) clipped to the image."""
    h, w = image_shape[:2]
    x0, y0 = top_left
    ch, cw = crop_shape[:2]
    ax0, ay0, ax1, ay1 = max(x0, 0), max(y0, 0), min(x0 + cw, w), min(y0 + ch, h)
    if ax0 >= ax1 or ay0 >= ay1:
        return None
    return ((slice(ay0, ay1), slice(ax0, ax1)),
            (slice(ay0 - y0, ay1 - y0), slice(ax0 - x0, ax1 - x0)))


def paste(canvas: np.ndarray, owner: np.ndarray, rgb: np.ndarray, lab: np.ndarray,
          top_left: tuple[int, int], instance: int) -> None:
    """Paint crop pixels where ``lab > 0`` at ``top_left`` (x, y), clipped to the image.

    ``canvas`` float32 [H, W, 3] and ``owner`` int32 [H, W] are updated in place.
    """
    sl = overlap(top_left, lab.shape, owner.shape)
    if sl is None:
        return
    dst, src = sl
    sub = lab[src] > 0
    owner[dst][sub] = instance
    canvas[dst][sub] = rgb[src][sub]


def draw_ball(rng: np.random.Generator, diameter: float) -> tuple[np.ndarray, np.ndarray]:
    """A ball crop: (labels uint8 [d, d] with 1 inside, RGB float32 [d, d, 3] with seams)."""
    d = max(3, int(round(diameter)))
    lab = np.zeros((d, d), np.uint8)
    c, r = (d * 4 - 4, d * 4 - 4), max(4, d * 4 - 4)  # centre and radius in 1/8 pixels
    cv2.circle(lab, c, r, 1, -1, cv2.LINE_8, 3)
    rgb = np.empty((d, d, 3), np.float32)
    rgb[:] = np.asarray(BALL_COLOUR) * rng.uniform(0.8, 1.1)
    seam = np.zeros((d, d), np.uint8)
    a = rng.uniform(0, 180)
    cv2.ellipse(seam, c, (r, max(1, int(r * rng.uniform(0.2, 0.6)))), a, 0, 360, 1,
                max(1, d // 14), cv2.LINE_8, 3)
    cv2.line(seam, (c[0] - r, c[1]), (c[0] + r, c[1]), 1, max(1, d // 14), cv2.LINE_8, 3)
    rgb[seam > 0] *= 0.3
    shade = np.linspace(1.15, 0.75, d, dtype=np.float32)
    return lab, rgb * shade[:, None, None]


def _place_people(rng: np.random.Generator, camera: Camera, n: int) -> np.ndarray:
    """Feet of ``n`` people in court metres [n, 2]: most around a play centre, some anywhere."""
    w, h = camera.size
    lo_y = camera.horizon + 0.06 * (h - camera.horizon)
    centre_img = np.array([[rng.uniform(0.15, 0.85) * w, rng.uniform(lo_y + 0.2 * (h - lo_y), h * 0.9)]])
    centre = np.clip(camera.to_court(centre_img)[0], 0.0, [COURT_LENGTH, COURT_WIDTH])
    spread = rng.uniform(1.2, 3.0)
    feet = []
    while len(feet) < n:
        if rng.random() < 0.65:
            p = centre + rng.normal(0.0, spread, 2)
        else:
            p = camera.to_court(np.array([[rng.uniform(-0.03, 1.03) * w, rng.uniform(lo_y, h * 1.08)]]))[0]
        x, y = camera.to_image(p[None])[0]
        on_floor = (-MARGIN < p[0] < COURT_LENGTH + MARGIN) and (-MARGIN < p[1] < COURT_WIDTH + MARGIN)
        if on_floor and lo_y <= y <= h * 1.1 and -0.05 * w <= x <= 1.05 * w:
            feet.append(p)
    return np.array(feet)


def camera_effects(rng: np.random.Generator, canvas: np.ndarray) -> np.ndarray:
    """Gain, optional blur and sensor noise: float RGB [H, W, 3] -> uint8 RGB [H, W, 3].

    Written with OpenCV calls on whole planes (numpy broadcasting over the colour axis is slow).
    """
    h, w = canvas.shape[:2]
    gain = rng.uniform(0.9, 1.08, 3)
    canvas = cv2.multiply(canvas, (*gain.tolist(), 0.0))
    if rng.random() < 0.6:
        canvas = cv2.GaussianBlur(canvas, (0, 0), rng.uniform(0.3, 1.0))
    image = cv2.convertScaleAbs(canvas)  # saturating cast, values are >= 0
    noise = rng.standard_normal((h // 2 + 1, w // 2 + 1, 3), dtype=np.float32)
    noise = cv2.resize(noise * np.float32(rng.uniform(2.0, 7.0)), (w, h),
                       interpolation=cv2.INTER_NEAREST)
    return cv2.add(image, noise, dtype=cv2.CV_8U)


def render_scene(rng: np.random.Generator, size: tuple[int, int],
                 n_people: int | None = None) -> Scene:
    """Render one scene of ``size`` (width, height) pixels with exact per-instance ownership.

    ``n_people`` defaults to a draw close to the DeepSport count (about 7.5 per image, 1..17).
    """
    camera = random_camera(rng, size)
    canvas = render_court(rng, camera)
    w, h = size
    owner = np.zeros((h, w), np.int32)
    n = n_people or int(np.clip(round(rng.normal(7.7, 3.0)), 1, 17))
    feet = _place_people(rng, camera, n)
    feet_img = camera.to_image(feet)
    ppm = camera.pixels_per_metre(feet)
    teams = team_outfits(rng)
    n_ref = int(rng.integers(0, 3)) if n > 3 else 0
    order = np.argsort(feet_img[:, 1], kind="stable")  # far (small y) first
    ball_mode = str(rng.choice(["hand", "air", "floor"], p=[0.6, 0.25, 0.15]))
    players = order[order >= n_ref]  # referees (the first n_ref) do not hold the ball
    holder = int(players[rng.integers(len(players))])
    categories: list[int] = []
    outfits: list[Outfit | None] = []

    def add_ball(centre: np.ndarray, diameter: float) -> None:
        lab, rgb = draw_ball(rng, diameter)
        top_left = (int(round(centre[0] - lab.shape[1] / 2)), int(round(centre[1] - lab.shape[0] / 2)))
        categories.append(BALL)
        outfits.append(None)
        paste(canvas, owner, rgb, lab, top_left, len(categories))

    ball_depth, ball_at = np.inf, None
    if ball_mode != "hand":
        g = feet[holder] + rng.normal(0.0, 0.6 if ball_mode == "floor" else 2.0, 2)
        gi = camera.to_image(g[None])[0]
        bppm = float(camera.pixels_per_metre(g[None])[0])
        lift = BALL_DIAMETER / 2 if ball_mode == "floor" else rng.uniform(1.0, 4.0)
        ball_depth, ball_at = gi[1], (gi - np.array([0.0, lift * bppm * 0.92]), BALL_DIAMETER * bppm)
    for j in order:
        if ball_at is not None and feet_img[j, 1] > ball_depth:
            add_ball(*ball_at)
            ball_at = None
        pose = random_pose(rng)
        referee = j < n_ref
        outfit = random_outfit(rng, int(j % 2), teams, referee)
        height = PERSON_HEIGHT * ppm[j] * 0.92 * rng.uniform(0.9, 1.08)
        lab, origin, hands = draw_person(pose, height)
        rgb = colour_parts(rng, lab, outfit)
        top_left = np.round(feet_img[j] - origin).astype(int)
        categories.append(HUMAN)
        outfits.append(outfit)
        paste(canvas, owner, rgb, lab, (int(top_left[0]), int(top_left[1])), len(categories))
        if ball_mode == "hand" and j == holder:
            hand = hands[0] + top_left + np.array([pose.facing * 0.02 * height, 0.0])
            add_ball(hand, BALL_DIAMETER * ppm[j])
    if ball_at is not None:
        add_ball(*ball_at)
    return Scene(camera_effects(rng, canvas), owner, categories, outfits)
