"""Articulated people: random poses and outfits drawn as part-label crops.

A person is a 2D skeleton in body units (height 1, y up, feet at 0) posed by joint angles
(0 = limb pointing down, positive = towards the facing side). ``draw_person`` rasterises it with
hard edges (no anti-aliasing) into a small uint8 crop of part labels; ``colour_parts`` turns labels
into RGB with the outfit, skin, per-part texture and shading. The scene composes crops into the
image and the owner map, so every painted pixel belongs to exactly one instance.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Part labels in a person crop; BACK + label marks a far-side limb (drawn darker).
SKIN, HAIR, JERSEY, SHORTS, SHOES, NUMBER = 1, 2, 3, 4, 5, 6
BACK = 8
N_LABELS = 16
POSES = ("standing", "running", "jumping", "defending", "dribbling")
SKIN_TONES = np.array([[238, 200, 170], [210, 160, 120], [170, 115, 80], [120, 80, 55],
                       [85, 58, 40]], np.float32)
# Texture amplitude per part (relative gain): (blotches, fabric weave and folds).
TEXTURE = {SKIN: (0.05, 0.0), HAIR: (0.12, 0.0), JERSEY: (0.03, 0.07), SHORTS: (0.03, 0.07),
           SHOES: (0.04, 0.0), NUMBER: (0.02, 0.03)}


@dataclass
class Outfit:
    """Colours (RGB 0..255) of one person; ``stripes`` draws a referee's striped shirt.

    ``team`` is the player's team index (0 or 1), -1 for a referee.
    """

    jersey: tuple[float, float, float]
    shorts: tuple[float, float, float]
    number: tuple[float, float, float]
    shoes: tuple[float, float, float]
    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    stripes: bool = False
    team: int = -1


@dataclass
class Pose:
    """Joint angles (radians) and body proportions of one person; ``lift`` = jump height (units)."""

    lean: float
    arms: list[tuple[float, float]]  # (shoulder, elbow bend) for near, far arm
    legs: list[tuple[float, float]]  # (hip, knee bend) for near, far leg
    facing: int  # +1 right, -1 left
    width: float  # shoulder half-width (units), smaller when seen from the side
    lift: float = 0.0
    bulk: float = 1.0


def team_outfits(rng: np.random.Generator) -> list[tuple[tuple[float, ...], tuple[float, ...]]]:
    """Two contrasting (jersey, number) colour pairs: one light team, one dark or coloured."""
    light = tuple(rng.uniform(215, 250, 3).tolist())
    hue = rng.uniform(0, 180)
    hsv = np.uint8([[[hue, rng.uniform(150, 255), rng.uniform(60, 200)]]])
    dark = tuple(float(v) for v in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])
    return [(light, dark), (dark, light)]


def random_outfit(rng: np.random.Generator, team: int, teams: list, referee: bool) -> Outfit:
    """Outfit of a player of ``team`` (index into ``teams``) or of a referee."""
    skin = SKIN_TONES[rng.integers(len(SKIN_TONES))] * rng.uniform(0.9, 1.08)
    hair = tuple(rng.uniform(10, 70, 3).tolist()) if rng.random() < 0.85 else tuple(skin.tolist())
    shoes = tuple(rng.choice([[240, 240, 240], [25, 25, 25], [200, 40, 40], [40, 40, 200]])
                  .astype(float).tolist())
    if referee:
        grey = (rng.uniform(150, 190),) * 3
        return Outfit(grey, (20.0, 20.0, 25.0), (15.0, 15.0, 15.0), (20.0, 20.0, 20.0),
                      tuple(skin.tolist()), hair, stripes=True)
    jersey, number = teams[team]
    return Outfit(jersey, jersey, number, shoes, tuple(skin.tolist()), hair, team=team)


def random_pose(rng: np.random.Generator, kind: str | None = None) -> Pose:
    """A standing, running, jumping, defending or dribbling pose with random joint angles."""
    kind = kind or str(rng.choice(POSES, p=[0.3, 0.3, 0.1, 0.15, 0.15]))
    u = rng.uniform
    facing = 1 if rng.random() < 0.5 else -1
    width = u(0.035, 0.12)
    if kind == "running":
        s = u(0.35, 0.8)
        legs = [(s, u(0.1, 0.5)), (-s * u(0.4, 1.0), u(0.9, 1.7))]
        arms = [(-s * u(0.6, 1.2), u(1.0, 1.7)), (s * u(0.6, 1.2), u(1.0, 1.7))]
        return Pose(u(0.1, 0.3), arms, legs, facing, width, lift=u(0.0, 0.04), bulk=u(0.9, 1.1))
    if kind == "jumping":
        arms = [(u(2.4, 3.1), u(0.0, 0.4)), (u(1.6, 3.0), u(0.0, 0.8))]
        legs = [(u(0.2, 0.8), u(0.6, 1.5)), (u(-0.1, 0.5), u(0.5, 1.4))]
        return Pose(u(-0.1, 0.15), arms, legs, facing, width, lift=u(0.08, 0.3), bulk=u(0.9, 1.1))
    if kind == "defending":
        legs = [(u(0.25, 0.5), u(0.3, 0.8)), (-u(0.25, 0.5), -u(0.3, 0.8))]
        arms = [(u(1.0, 2.2), u(0.0, 0.6)), (-u(1.0, 2.2), -u(0.0, 0.6))]
        return Pose(u(0.05, 0.25), arms, legs, facing, u(0.09, 0.13), bulk=u(0.9, 1.1))
    if kind == "dribbling":
        legs = [(u(0.1, 0.4), u(0.2, 0.6)), (-u(0.1, 0.4), u(0.3, 0.9))]
        arms = [(u(0.3, 0.8), u(0.3, 0.9)), (u(-0.6, 0.2), u(0.2, 1.2))]
        return Pose(u(0.15, 0.35), arms, legs, facing, width, bulk=u(0.9, 1.1))
    legs = [(u(-0.15, 0.15), u(0.0, 0.25)), (u(-0.15, 0.15), u(0.0, 0.25))]
    arms = [(u(-0.4, 0.5), u(0.0, 1.0)), (u(-0.4, 0.5), u(0.0, 1.0))]
    return Pose(u(-0.05, 0.1), arms, legs, facing, width, bulk=u(0.9, 1.15))


def _limb(start: np.ndarray, angle: float, length: float, facing: int) -> np.ndarray:
    """End point of a limb of ``length`` from ``start`` at ``angle`` (0 = down), body units."""
    return start + length * np.array([np.sin(angle) * facing, -np.cos(angle)])


def draw_person(pose: Pose, height_px: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rasterise ``pose`` at ``height_px`` pixels tall: (labels uint8 [h, w], origin [2],
    hands [2, 2]).

    ``origin`` is the crop pixel (x, y) of the point between the feet on the floor (before the
    jump lift), so the crop goes at ``foot - origin`` in the image; ``hands`` are the wrists'
    crop pixels (x, y), near arm first.
    """
    f, s, b = pose.facing, float(height_px), pose.bulk
    pelvis = np.array([0.0, 0.5])
    neck = _limb(pelvis, np.pi - pose.lean, 0.31, f)
    head = _limb(neck, np.pi - pose.lean * 0.6, 0.085, f)
    side = np.array([1.0, 0.0])
    joints: dict[str, np.ndarray] = {"pelvis": pelvis, "neck": neck, "head": head}
    limbs = []  # (label, [points], [thickness in units])
    for i, (hip, knee) in enumerate(pose.legs):
        h0 = pelvis + side * (0.03 if i == 0 else -0.03) * f
        k = _limb(h0, hip, 0.25, f)
        a = _limb(k, hip - knee, 0.24, f)
        limbs.append((i, "leg", [h0, k, a], [0.085 * b, 0.06 * b]))
        joints[f"ankle{i}"] = a
    for i, (sh, el) in enumerate(pose.arms):
        s0 = neck + side * (pose.width if i == 0 else -pose.width) * f - np.array([0, 0.035])
        e = _limb(s0, sh, 0.16, f)
        w = _limb(e, sh + el, 0.15, f)
        limbs.append((i, "arm", [s0, e, w], [0.05 * b, 0.042 * b]))
        joints[f"wrist{i}"] = w
    # Stand the lowest ankle on the floor (plus the jump lift).
    shift = np.array([0.0, pose.lift + 0.025 - min(joints["ankle0"][1], joints["ankle1"][1])])
    limbs = [(i, k, [p + shift for p in ps], t) for i, k, ps, t in limbs]
    joints = {k: v + shift for k, v in joints.items()}
    pelvis, neck, head = joints["pelvis"], joints["neck"], joints["head"]
    pts = np.array([p for _, _, ps, _ in limbs for p in ps] + [head, neck, pelvis])
    lo, hi = pts.min(0) - 0.12, pts.max(0) + 0.12
    wpx, hpx = int(np.ceil((hi[0] - lo[0]) * s)) + 2, int(np.ceil((hi[1] - lo[1]) * s)) + 2
    lab = np.zeros((hpx, wpx), np.uint8)

    def px(p: np.ndarray) -> tuple[int, int]:  # body units -> crop pixels, 3 fractional bits
        return int(round((p[0] - lo[0]) * s * 8)), int(round((hi[1] - p[1]) * s * 8))

    def seg(p: np.ndarray, q: np.ndarray, label: int, thick: float) -> None:
        cv2.line(lab, px(p), px(q), label, max(1, int(round(thick * s))), cv2.LINE_8, 3)

    back = [lm for lm in limbs if lm[0] == 1]
    front = [lm for lm in limbs if lm[0] == 0]
    for _, kind, (p0, p1, p2), (t0, t1) in back:
        base = SKIN + BACK
        seg(p0, p1, SHORTS + BACK if kind == "leg" else base, t0)
        seg(p1, p2, base, t1)
        if kind == "leg":
            seg(p0 + 0.45 * (p1 - p0), p1, base, t0 * 0.85)
            _shoe(lab, px(p2), f, s, SHOES + BACK)
    # Torso: quadrilateral from shoulders to hips, jersey; shorts below the waist.
    sw, hw = pose.width + 0.025 * b, 0.065 * b + pose.width * 0.2
    up = (neck - pelvis) / np.linalg.norm(neck - pelvis)
    across = np.array([up[1], -up[0]])
    waist = pelvis + up * 0.07
    torso = [neck + across * sw, neck - across * sw, waist - across * hw, waist + across * hw]
    seg(neck - up * 0.03, head, SKIN, 0.045)  # neck, so the head stays attached
    cv2.fillPoly(lab, [np.array([px(p) for p in torso], np.int32)], JERSEY, cv2.LINE_8, 3)
    shorts = [waist + across * hw, waist - across * hw, pelvis - across * hw * 1.1 - up * 0.06,
              pelvis + across * hw * 1.1 - up * 0.06]
    cv2.fillPoly(lab, [np.array([px(p) for p in shorts], np.int32)], SHORTS, cv2.LINE_8, 3)
    if pose.width > 0.07:  # number on the chest or back
        c = neck - up * 0.1
        q = [c + across * 0.035 + up * 0.04, c - across * 0.035 + up * 0.04,
             c - across * 0.035 - up * 0.04, c + across * 0.035 - up * 0.04]
        cv2.fillPoly(lab, [np.array([px(p) for p in q], np.int32)], NUMBER, cv2.LINE_8, 3)
    for _, kind, (p0, p1, p2), (t0, t1) in front:
        if kind == "leg":
            seg(p0, p1, SHORTS, t0)
            seg(p0 + 0.45 * (p1 - p0), p1, SKIN, t0 * 0.9)
            seg(p1, p2, SKIN, t1)
            _shoe(lab, px(p2), f, s, SHOES)
        else:
            seg(p0, p1, SKIN, t0)  # sleeveless jersey
            seg(p1, p2, SKIN, t1)
    hx, hy = px(head)
    axes = (int(0.05 * s * 8), int(0.065 * s * 8))
    cv2.ellipse(lab, (hx, hy), axes, 0, 0, 360, SKIN, -1, cv2.LINE_8, 3)
    cv2.ellipse(lab, (hx - f * axes[0] // 4, hy - axes[1] // 3), axes, 0, 180, 360, HAIR, -1,
                cv2.LINE_8, 3)
    origin = np.array([-lo[0] * s, hi[1] * s])
    hands = np.array([px(joints[f"wrist{i}"]) for i in range(2)], float) / 8
    return lab, origin, hands


def _shoe(lab: np.ndarray, ankle: tuple[int, int], facing: int, s: float, label: int) -> None:
    """A shoe: a small ellipse in front of the ankle (``ankle`` in 1/8 pixels)."""
    c = (ankle[0] + int(facing * 0.03 * s * 8), ankle[1] + int(0.01 * s * 8))
    cv2.ellipse(lab, c, (max(4, int(0.055 * s * 8)), max(4, int(0.025 * s * 8))), 0, 0, 360,
                label, -1, cv2.LINE_8, 3)


def part_texture(rng: np.random.Generator, lab: np.ndarray) -> np.ndarray:
    """Gain map float32 [h, w] near 1 for part labels [h, w], amplitudes from ``TEXTURE``.

    Every part gets soft blotches (skin pores and tone, hair strands, scuffs); clothes also get
    a mesh weave (a one-pixel checker) and folds (slanted waves, a dozen or more along the body).
    """
    h, w = lab.shape
    blotch_amp, weave_amp = np.zeros(N_LABELS, np.float32), np.zeros(N_LABELS, np.float32)
    for label, (blotch, weave) in TEXTURE.items():
        blotch_amp[[label, label + BACK]] = blotch
        weave_amp[[label, label + BACK]] = weave
    coarse = rng.standard_normal((max(2, h // 3), max(2, w // 3)), dtype=np.float32)
    blotches = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)
    blotches += 0.5 * rng.standard_normal((h, w), dtype=np.float32)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    angle, period = rng.uniform(-0.6, 0.6), max(3.0, h * rng.uniform(0.03, 0.08))
    folds = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * np.float32(2 * np.pi / period)
                   + np.float32(rng.uniform(0, 2 * np.pi)))
    mesh = ((xx + yy) % 2) * 2.0 - 1.0
    weave = 0.6 * folds + 0.4 * mesh
    return 1.0 + blotch_amp[lab] * blotches + weave_amp[lab] * weave


def colour_parts(rng: np.random.Generator, lab: np.ndarray, outfit: Outfit) -> np.ndarray:
    """Part labels uint8 [h, w] -> float32 RGB [h, w, 3] with texture and shading from one side.

    Far-side parts are darker; a referee's shirt gets vertical black stripes; every part gets
    ``part_texture``'s low-amplitude skin or fabric texture.
    """
    lut = np.zeros((N_LABELS, 3), np.float32)
    for label, colour in ((SKIN, outfit.skin), (HAIR, outfit.hair), (JERSEY, outfit.jersey),
                          (SHORTS, outfit.shorts), (SHOES, outfit.shoes), (NUMBER, outfit.number)):
        lut[label] = colour
        lut[label + BACK] = np.asarray(colour, np.float32) * 0.78
    rgb = lut[lab]
    h, w = lab.shape
    if outfit.stripes:
        period = max(2, w // 8)
        stripe = (np.arange(w) // (period // 2 or 1)) % 2 == 0
        shirt = ((lab == JERSEY) | (lab == JERSEY + BACK)) & stripe[None, :]
        rgb[shirt] = 20.0
    light = rng.uniform(-0.35, 0.35)
    ramp = 1.0 + light * np.linspace(-1.0, 1.0, w, dtype=np.float32)
    vert = np.linspace(1.08, 0.85, h, dtype=np.float32)
    gain = part_texture(rng, lab) * ramp[None, :] * vert[:, None]
    return rgb * gain[:, :, None]
