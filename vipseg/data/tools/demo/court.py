"""Basketball court backgrounds seen from a high side camera.

A court is drawn top-down (wooden planks, painted key, lines) in metres, then warped into the
image with a random camera homography; advertising boards and a crowd band fill the top.
Coordinates: court metres (x along the length 0..28, y across the width 0..15); image pixels
(x right, y down). Everything is numpy float32 RGB in 0..255 until the writer quantises it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from vipseg.data.tools.demo.people import SKIN_TONES

COURT_LENGTH = 28.0  # metres
COURT_WIDTH = 15.0
MARGIN = 3.0  # floor beyond the lines, metres
PERSON_HEIGHT = 1.9  # metres, used to turn floor scale into body size


@dataclass
class Camera:
    """Ground-plane camera: ``homography`` maps court metres (x, y, 1) to image pixels.

    ``horizon`` is the image row of the far floor edge (boards stand on it); ``size`` is
    (width, height) in pixels.
    """

    homography: np.ndarray  # [3, 3] float64, court metres -> image pixels
    horizon: float
    size: tuple[int, int]

    def to_image(self, pts: np.ndarray) -> np.ndarray:
        """Court points [N, 2] (metres) -> image points [N, 2] (pixels)."""
        p = cv2.perspectiveTransform(pts.reshape(-1, 1, 2).astype(np.float64), self.homography)
        return p.reshape(-1, 2)

    def to_court(self, pts: np.ndarray) -> np.ndarray:
        """Image points [N, 2] (pixels) -> court points [N, 2] (metres)."""
        inv = np.linalg.inv(self.homography)
        p = cv2.perspectiveTransform(pts.reshape(-1, 1, 2).astype(np.float64), inv)
        return p.reshape(-1, 2)

    def pixels_per_metre(self, court_xy: np.ndarray) -> np.ndarray:
        """Local horizontal scale (pixels per metre) at court points [N, 2] -> [N]."""
        base = self.to_image(court_xy)
        cam_dx = self._camera_axis()
        step = self.to_image(court_xy + 0.5 * cam_dx) - base
        return np.linalg.norm(step, axis=1) * 2.0

    def _camera_axis(self) -> np.ndarray:
        """Court direction (unit, metres) that moves along the image x axis near the centre."""
        w, h = self.size
        c = self.to_court(np.array([[w / 2, h * 0.7], [w / 2 + 10, h * 0.7]]))
        d = c[1] - c[0]
        return d / np.linalg.norm(d)


def random_camera(rng: np.random.Generator, size: tuple[int, int]) -> Camera:
    """A high side camera looking at part of the court, with random pan, zoom and tilt.

    People at the far floor edge are about 7% of the image height tall, near the bottom about
    16%, which gives DeepSport's mask areas at the native sizes.
    """
    w, h = size
    horizon = h * rng.uniform(0.22, 0.34)
    ppm_far = h * rng.uniform(0.036, 0.046)  # pixels per metre at the horizon row
    ppm_near = ppm_far * rng.uniform(2.0, 2.6)  # at the bottom row
    depth = rng.uniform(8.0, 11.0)  # metres of floor between the two rows
    # Camera ground frame: u to the image right, v away from the camera (metres).
    far_half, near_half = w / (2 * ppm_far), w / (2 * ppm_near)
    ground = np.array([[-far_half, depth], [far_half, depth], [near_half, 0.0], [-near_half, 0.0]])
    image = np.array([[0, horizon], [w, horizon], [w, h], [0, h]], np.float64)
    cam_h = cv2.getPerspectiveTransform(ground.astype(np.float32), image.astype(np.float32))
    # Court frame -> camera ground frame: yaw, then put a random court point at the view centre.
    yaw = np.deg2rad(rng.uniform(-25, 25))
    centre = np.array([rng.uniform(5.0, COURT_LENGTH - 5.0), rng.uniform(4.0, COURT_WIDTH - 2.0)])
    c, s = np.cos(yaw), np.sin(yaw)
    rot = np.array([[c, -s], [s, c]])
    # Court y grows away from the camera (the camera stands beside the near sideline y = 15 is far).
    flip = np.diag([1.0, -1.0])
    lin = rot @ flip
    off = np.array([0.0, depth * 0.45]) - lin @ centre
    court_to_ground = np.eye(3)
    court_to_ground[:2, :2] = lin
    court_to_ground[:2, 2] = off
    return Camera(cam_h @ court_to_ground, float(horizon), (w, h))


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], cells: int,
                  lo: float, hi: float) -> np.ndarray:
    """Smooth random field [H, W] float32 in lo..hi from a ``cells``-wide random grid."""
    gh = max(2, int(round(cells * shape[0] / max(shape[1], 1))))
    grid = rng.uniform(lo, hi, (gh, cells)).astype(np.float32)
    return cv2.resize(grid, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)


def _court_texture(rng: np.random.Generator, ppm: float) -> np.ndarray:
    """Top-down floor (court plus margin) at ``ppm`` pixels per metre: float32 RGB [H, W, 3]."""
    tw = int((COURT_LENGTH + 2 * MARGIN) * ppm)
    th = int((COURT_WIDTH + 2 * MARGIN) * ppm)
    wood = np.array([rng.uniform(175, 215), rng.uniform(120, 155), rng.uniform(70, 100)], np.float32)
    plank_w = max(1, int(round(0.09 * ppm)))
    n_planks = th // plank_w + 1
    plank_gain = rng.normal(1.0, 0.05, n_planks).astype(np.float32)
    rows = np.repeat(plank_gain, plank_w)[:th]
    grain = _smooth_field(rng, (th, tw), 64, 0.93, 1.07)
    grain *= rows[:, None]
    grain[::plank_w] *= 0.9  # plank joints
    tex = cv2.merge([grain * wood[0], grain * wood[1], grain * wood[2]])
    def m(x: float, y: float) -> tuple[int, int]:
        return int(round((x + MARGIN) * ppm * 16)), int(round((y + MARGIN) * ppm * 16))

    paint = tuple(float(v) for v in rng.choice([[150, 50, 45], [40, 80, 150], [40, 110, 70],
                                                 [170, 120, 60]]))
    line = (240.0, 240.0, 235.0)
    lw = max(1, int(round(0.05 * ppm)))
    aa = dict(lineType=cv2.LINE_AA, shift=4)
    for end in (0.0, COURT_LENGTH):  # keys and three-point arcs at both ends
        sgn = 1 if end == 0.0 else -1
        key = [m(end, 5.05), m(end + sgn * 5.8, 5.05), m(end + sgn * 5.8, 9.95), m(end, 9.95)]
        cv2.fillPoly(tex, [np.array(key, np.int32)], paint, **aa)
        cv2.polylines(tex, [np.array(key, np.int32)], True, line, lw, **aa)
        cv2.circle(tex, m(end + sgn * 5.8, 7.5), int(1.8 * ppm * 16), line, lw, **aa)
        hoop = end + sgn * 1.575
        r = int(6.75 * ppm * 16)
        start, stop = (-78, 78) if sgn == 1 else (102, 258)
        cv2.ellipse(tex, m(hoop, 7.5), (r, r), 0, start, stop, line, lw, **aa)
        for y in (0.9, 14.1):
            cv2.line(tex, m(end, y), m(hoop + sgn * 1.3, y), line, lw, **aa)
    cv2.rectangle(tex, m(0, 0), m(COURT_LENGTH, COURT_WIDTH), line, lw, **aa)
    cv2.line(tex, m(COURT_LENGTH / 2, 0), m(COURT_LENGTH / 2, COURT_WIDTH), line, lw, **aa)
    cv2.circle(tex, m(COURT_LENGTH / 2, 7.5), int(1.8 * ppm * 16), line, lw, **aa)
    return tex


def _boards_and_crowd(rng: np.random.Generator, img: np.ndarray, horizon: int) -> None:
    """Paint advertising boards just above ``horizon`` and a crowd band above them, in place."""
    h, w = img.shape[:2]
    board_h = max(2, int(h * rng.uniform(0.035, 0.06)))
    top = max(0, horizon - board_h)
    # Crowd: spectators as a head (skin or hair) above a torso (muted clothes), in rows of
    # seats with gaps; drawn on a coarse grid, then enlarged with smooth interpolation.
    cell = max(2, int(h * 0.016))
    ch, cw = max(1, top // cell + 1), w // cell + 1
    heads = SKIN_TONES[rng.integers(len(SKIN_TONES), size=(ch, cw))]
    hair = rng.random((ch, cw)) < 0.3
    heads[hair] = rng.uniform(15, 60, (int(hair.sum()), 1))
    clothes = rng.uniform(30, 220, (ch, cw, 3)).astype(np.float32)
    clothes = 0.5 * clothes + 0.5 * clothes.mean(axis=2, keepdims=True)
    grid = np.stack([heads, clothes], axis=1).reshape(2 * ch, cw, 3)
    empty = np.repeat(rng.random((ch, cw)) < 0.2, 2, axis=0)
    grid[empty] = rng.uniform(25, 60, 3)
    crowd = cv2.resize(grid, (cw * cell, ch * cell), interpolation=cv2.INTER_LINEAR)
    img[:top] = crowd[:top, :w] * rng.uniform(0.6, 1.0)
    # Boards: panels of random bright colours with darker text-like blocks.
    x = 0
    while x < w:
        pw = int(w * rng.uniform(0.08, 0.2))
        img[top:horizon, x:x + pw] = rng.uniform(30, 250, 3)
        tx = x + pw // 6
        ty0, ty1 = top + board_h // 3, horizon - board_h // 3
        img[ty0:max(ty0 + 1, ty1), tx:tx + pw * 2 // 3] = rng.uniform(0, 255, 3)
        x += pw


def _lighting(rng: np.random.Generator, shape: tuple[int, int], horizon: float) -> np.ndarray:
    """Gain map [H, W] float32: smooth gradient plus soft reflections of ceiling lights.

    Computed on a coarse grid and enlarged, so its cost does not grow with the image size.
    """
    h, w = shape
    gw = 64
    gh = max(2, int(gw * h / w))
    gain = _smooth_field(rng, (gh, gw), 4, 0.75, 1.15)
    yy, xx = np.mgrid[:gh, :gw].astype(np.float32)
    for _ in range(int(rng.integers(1, 4))):
        cx, cy = rng.uniform(0, gw), rng.uniform(horizon / h * gh, gh)
        r = rng.uniform(0.05, 0.15) * gh
        gain += 0.25 * np.exp(-(((xx - cx) / (2 * r)) ** 2 + ((yy - cy) / r) ** 2))
    return cv2.resize(gain, (w, h), interpolation=cv2.INTER_CUBIC)


def render_court(rng: np.random.Generator, camera: Camera) -> np.ndarray:
    """Background image float32 RGB [H, W, 3] (0..255): floor, lines, boards and crowd.

    The floor gets a smooth lighting gradient and a few soft light reflections.
    """
    w, h = camera.size
    near_ppm = float(camera.pixels_per_metre(camera.to_court(np.array([[w / 2, h - 1.0]])))[0])
    ppm = float(np.clip(near_ppm * 0.5, 8.0, 48.0))
    tex = _court_texture(rng, ppm)
    to_tex = np.diag([ppm, ppm, 1.0])
    to_tex[:2, 2] = MARGIN * ppm
    tex_to_img = camera.homography @ np.linalg.inv(to_tex)
    surround = np.array([rng.uniform(60, 110), rng.uniform(60, 90), rng.uniform(50, 80)])
    img = cv2.warpPerspective(tex, tex_to_img, (w, h), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=tuple(surround.tolist()))
    light = _lighting(rng, (h, w), camera.horizon)
    img = cv2.multiply(img, cv2.merge([light, light, light]))
    _boards_and_crowd(rng, img, int(camera.horizon))
    return img
