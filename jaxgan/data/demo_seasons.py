"""The ``demo:seasons`` scenes: one landscape geometry rendered as summer (A) or winter (B).

A scene is sky with a sun and clouds, two ridges of hills with woods, sometimes
a lake, and houses and trees standing on the ground, drawn back to front. The
two styles share the geometry but not a per-pixel colour map: in winter the sky
is overcast (the clouds show as paler patches), the ground and the top surfaces
of roofs and fir tiers carry snow (a layer whose thickness follows the slope),
the woods are frosted, deciduous trees lose their leaves (the crown becomes a
haze of twigs and a few branches with the background showing through), windows
are lit and the lake is frozen with cracks; the global light is warm in summer
and cool and flat in winter.

Each style is a function of the other up to texture noise: everything drawn
per scene (geometry, house colours, where woods and clouds are) is visible in
both, and what is not -- ground and leaf texture, the branches of a bare tree,
ripples, ice cracks, sensor noise -- comes from the noise generator, which a
second rendering (``noise=1``) redraws. Shading follows the sun, which is in
both pictures, so flipped scenes stay predictable.
"""
from __future__ import annotations

import numpy as np

from jaxgan.data.demo_common import finish, upsample, value_noise, vertical_gradient

_HOUSE_WALLS = np.array([(225, 220, 205), (210, 180, 110), (170, 70, 55), (120, 140, 170), (200, 200, 200)],
                        np.float32)
_HOUSE_ROOFS = np.array([(150, 60, 40), (80, 70, 70), (110, 75, 50)], np.float32)


def _ridge(rng: np.random.Generator, w: int, base: float, amp: float, freqs: tuple[float, float]) -> np.ndarray:
  x = np.arange(w, dtype=np.float32) / w
  y = np.full(w, base, np.float32)
  for _ in range(3):
    f = rng.uniform(*freqs)
    y += rng.uniform(0.3, 1.0) * amp * np.sin(2 * np.pi * f * x + rng.uniform(0, 2 * np.pi)).astype(np.float32)
  return y


def make_scene(rng: np.random.Generator, h: int, w: int) -> dict:
  """Geometry and materials of one landscape (every scene-level random draw happens here)."""
  s = {"h": h, "w": w}
  s["far"] = _ridge(rng, w, h * rng.uniform(0.3, 0.4), h * 0.05, (0.8, 3.5))
  s["near"] = _ridge(rng, w, h * rng.uniform(0.5, 0.6), h * 0.035, (0.4, 2.0))
  s["sun"] = (w * rng.uniform(0.1, 0.9), h * rng.uniform(0.07, 0.22), h * rng.uniform(0.03, 0.05))
  s["lake"] = None
  if rng.random() < 0.5:
    s["lake"] = (w * rng.uniform(0.25, 0.75), h * rng.uniform(0.8, 0.9), w * rng.uniform(0.15, 0.3),
                 h * rng.uniform(0.04, 0.07))
  s["forest"] = rng.random((6, 10), dtype=np.float32)      # where woods cover the hills
  s["clouds"] = rng.random((8, 4), dtype=np.float32)      # where clouds are (summer: white, winter: paler grey)
  s["forest_level"] = rng.uniform(0.5, 0.7)
  objects = []
  n_houses, n_trees = int(rng.integers(0, 2)), int(rng.integers(2, 6))
  for k in range(n_houses + n_trees):
    x = w * rng.uniform(0.05, 0.95)
    top = float(s["near"][int(np.clip(x, 0, w - 1))])
    base = rng.uniform(top + 0.03 * h, 0.98 * h)
    scale = 0.45 + 0.55 * (base - top) / max(1.0, h - top)
    if k < n_houses:
      wall_w, wall_h = scale * w * rng.uniform(0.14, 0.22), scale * h * rng.uniform(0.09, 0.14)
      objects.append(dict(kind="house", x=x, base=base, ww=wall_w, wh=wall_h,
                          rh=wall_h * rng.uniform(0.5, 0.9), wall=_HOUSE_WALLS[rng.integers(len(_HOUSE_WALLS))],
                          roof=_HOUSE_ROOFS[rng.integers(len(_HOUSE_ROOFS))], n_win=int(rng.integers(1, 4)),
                          door=rng.uniform(0.15, 0.85)))
    else:
      th = scale * h * rng.uniform(0.14, 0.28)
      objects.append(dict(kind="fir" if rng.random() < 0.5 else "leafy", x=x, base=base, th=th,
                          tw=th * rng.uniform(0.35, 0.6), tiers=int(rng.integers(2, 4))))
  s["objects"] = sorted(objects, key=lambda o: o["base"])
  return s


def _sky(s: dict, style: str) -> np.ndarray:
  """HxWx3 image with the sky painted in the rows above the far ridge (the hills cover the rest)."""
  h, w = s["h"], s["w"]
  hs = int(min(h, np.ceil(s["far"].max()) + 1))     # rows that can show sky
  sx, sy, sr = s["sun"]
  d = np.hypot(np.arange(w, dtype=np.float32)[None, :] - sx, np.arange(hs, dtype=np.float32)[:, None] - sy)
  clouds = np.clip(upsample(s["clouds"], h, w)[:hs] * 2.5 - 1.55, 0, 1)[..., None]
  if style == "summer":
    sky = vertical_gradient(h, w, (60, 120, 210), (170, 205, 235))[:hs]
    sky += clouds * (250 - sky)
    sky += np.exp(-d / (3 * sr))[..., None] * np.array((120, 90, 20), np.float32)
    sky[d < sr] = (255, 245, 185)
  else:
    sky = vertical_gradient(h, w, (160, 167, 180), (208, 212, 220))[:hs]
    sky += clouds * np.float32(26.0)
    sky += np.exp(-d / (1.5 * sr))[..., None] * np.array((40, 40, 35), np.float32)
    sky[d < sr * 0.8] = (236, 236, 230)
  img = np.zeros((h, w, 3), np.float32)
  img[:hs] = sky
  return img


def _ground(img: np.ndarray, s: dict, style: str, rng: np.random.Generator) -> np.ndarray:
  """Paint the far and the near hills (the near ones carry the ground); returns the image."""
  h, w = s["h"], s["w"]
  light_dir = 1.0 if s["sun"][0] > w / 2 else -1.0
  near_bottom = min(h, int(np.ceil(s["near"].max())) + 1)
  woods = upsample(s["forest"], h, w)
  for ridge, far in ((s["far"], True), (s["near"], False)):
    # Only the band of rows where this layer can be visible is computed.
    r0 = int(np.clip(np.floor(ridge.min()), 0, h - 1))
    r1 = max(r0 + 1, near_bottom if far else h)
    ys = np.arange(r0, r1, dtype=np.float32)[:, None]
    mask = (ys >= ridge[None, :])[..., None]
    grad = np.gradient(ridge)
    facing = np.tanh(grad * light_dir * 0.6)[None, :]      # > 0: the slope faces the sun
    tex = value_noise(rng, r1 - r0, w, max(2, (20 if far else 40) * (r1 - r0) // h), aspect=h / max(1, r1 - r0))
    if style == "summer":
      base = np.array((105, 140, 125) if far else (80, 145, 55), np.float32)
      shade = 1.0 + 0.25 * facing + 0.1 * (tex - 0.5)
      if not far:
        shade -= 0.15 * np.clip((ys - ridge[None, :]) / (0.25 * h), 0, 1)
      col = base * shade[..., None]
    else:
      base = np.array((172, 184, 206) if far else (236, 240, 248), np.float32)
      shade = np.minimum(1.0 + 0.08 * facing + 0.05 * (tex - 0.5), 1.05)
      col = base * shade[..., None] + np.clip(-facing, 0, 1)[..., None] * np.array((-30, -18, 0), np.float32)
    forest = woods[r0:r1] > s["forest_level"] + (0.0 if far else 0.12)
    if not far:
      forest &= ys < ridge[None, :] + 0.15 * h
    if style == "summer":
      wood = np.array((45, 90, 50), np.float32) * (0.88 + 0.24 * tex)[..., None]
    else:   # frosted woods
      wood = np.array((120, 134, 136), np.float32) * (0.94 + 0.12 * tex)[..., None]
    col = np.where(forest[..., None], wood, col)
    img[r0:r1] = np.where(mask, col, img[r0:r1])
  return img


def _lake(img: np.ndarray, s: dict, style: str, rng: np.random.Generator) -> None:
  if s["lake"] is None:
    return
  h, w = s["h"], s["w"]
  cx, cy, rx, ry = s["lake"]
  ys = np.arange(h, dtype=np.float32)[:, None]
  xs = np.arange(w, dtype=np.float32)[None, :]
  inside = ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1
  t = np.clip((ys - (cy - ry)) / (2 * ry), 0, 1)
  field = value_noise(rng, h, w, 6)     # one texture field: ripples in summer, cracks in the ice in winter
  if style == "summer":
    col = np.array((150, 190, 225), np.float32) * (1 - t[..., None]) + np.array((45, 95, 165), np.float32) * t[..., None]
    ripple = (np.sin(ys * 1.3 + 6 * field) > 0.85)
    col = np.where(ripple[..., None], col * 1.15, col)
  else:
    col = np.broadcast_to(np.array((198, 216, 232), np.float32), (h, w, 3)).copy()
    col[np.abs(field - 0.5) < 0.012] = (130, 150, 170)
  img[inside] = np.broadcast_to(col, img.shape)[inside]


def _box(o: dict, h: int, w: int, half_w: float, top: float) -> tuple[slice, slice, np.ndarray, np.ndarray]:
  """Clipped row/col slices covering [x-half_w, x+half_w] x [top, base] and their coordinates."""
  x0, x1 = int(max(0, np.floor(o["x"] - half_w))), int(min(w, np.ceil(o["x"] + half_w) + 1))
  y0, y1 = int(max(0, np.floor(top))), int(min(h, np.ceil(o["base"]) + 1))
  ys = np.arange(y0, y1, dtype=np.float32)[:, None]
  xs = np.arange(x0, x1, dtype=np.float32)[None, :]
  return slice(y0, y1), slice(x0, x1), ys, xs


def _house(img: np.ndarray, o: dict, style: str, s: dict) -> None:
  h, w = s["h"], s["w"]
  ww, wh, rh = o["ww"], o["wh"], o["rh"]
  wall_top = o["base"] - wh
  over = ww * 0.08
  sl_y, sl_x, ys, xs = _box(o, h, w, ww / 2 + over, wall_top - rh)
  sub = img[sl_y, sl_x]
  dx = np.abs(xs - o["x"])
  wall = (dx <= ww / 2) & (ys >= wall_top) & (ys <= o["base"])
  tint = np.float32(1.0 if style == "summer" else 0.9)
  sub[wall] = o["wall"] * tint
  # Windows in a row, a door.
  win_h = wh * 0.3
  for k in range(o["n_win"]):
    cxk = o["x"] - ww / 2 + ww * (k + 0.5) / o["n_win"]
    m = (np.abs(xs - cxk) <= ww * 0.09) & (np.abs(ys - (wall_top + wh * 0.35)) <= win_h / 2)
    sub[m] = (55, 62, 80) if style == "summer" else (245, 205, 115)
  door = (np.abs(xs - (o["x"] - ww / 2 + ww * o["door"])) <= ww * 0.08) & (ys >= o["base"] - wh * 0.55) & (ys <= o["base"])
  sub[door] = (90, 60, 40)
  # Roof: a triangle; in winter a snow layer on its top surfaces.
  half = (ww / 2 + over) * (ys - (wall_top - rh)) / rh
  roof = (ys >= wall_top - rh) & (ys < wall_top) & (dx <= half)
  sub[roof] = o["roof"]
  if style == "winter":
    edge_y = wall_top - rh + rh * dx / (ww / 2 + over)      # the roof's upper edge above column x
    snow = roof & (ys - edge_y < max(2.0, rh * 0.35))
    sub[snow] = (240, 243, 250)


def _tree(img: np.ndarray, o: dict, style: str, s: dict, rng: np.random.Generator) -> None:
  h, w = s["h"], s["w"]
  th, tw = o["th"], o["tw"]
  sl_y, sl_x, ys, xs = _box(o, h, w, tw / 2 + 1, o["base"] - th)
  sub = img[sl_y, sl_x]
  dx = xs - o["x"]
  trunk_h = th * (0.18 if o["kind"] == "fir" else 0.35)
  trunk = (np.abs(dx) <= max(1.0, tw * 0.06)) & (ys >= o["base"] - trunk_h) & (ys <= o["base"])
  trunk_col = (95, 65, 40) if style == "summer" else (75, 65, 60)
  if o["kind"] == "fir":
    sub[trunk] = trunk_col
    crown_top, crown_h = o["base"] - th, th - trunk_h
    tier_h = crown_h / o["tiers"]
    for t in range(o["tiers"]):
      apex = crown_top + t * tier_h * 0.75
      span = tier_h * 1.4
      half = (tw / 2) * (0.6 + 0.4 * (t + 1) / o["tiers"]) * (ys - apex) / span
      m = (ys >= apex) & (ys < apex + span) & (np.abs(dx) <= half)
      light = 1.0 + 0.2 * np.sign(dx) * (1 if s["sun"][0] > o["x"] else -1)
      base = (35, 85, 45) if style == "summer" else (95, 112, 108)    # winter firs are frosted, like the woods
      col = np.array(base, np.float32) * light[..., None]
      sub[m] = np.broadcast_to(col, m.shape + (3,))[m]
      if style == "winter":
        edge = apex + span * np.abs(dx) / max(1e-3, (tw / 2) * (0.6 + 0.4 * (t + 1) / o["tiers"]))
        sub[m & (ys - edge < max(1.5, span * 0.18))] = (238, 242, 250)
    return
  # Leafy tree: round crown in summer, bare branches in winter.
  cr_x, cr_y = tw / 2, (th - trunk_h) * 0.6
  cy = o["base"] - trunk_h - cr_y * 0.8
  r = ((dx / cr_x) ** 2 + ((ys - cy) / cr_y) ** 2)
  crown = r <= 1
  # One texture field per tree: the leaves' shading in summer, the twigs and branches in winter.
  n_branch, phase = int(rng.integers(4, 8)), rng.uniform(0, np.pi)
  leaves = value_noise(rng, sub.shape[0], sub.shape[1], max(3, int(tw / 4)))
  if style == "summer":
    sub[trunk] = trunk_col
    sun_side = np.sign(dx) * (1 if s["sun"][0] > o["x"] else -1)
    shade = 0.88 + 0.18 * leaves + 0.12 * sun_side - 0.25 * np.clip((ys - cy) / cr_y, 0, 1)
    col = np.array((60, 125, 45), np.float32) * shade[..., None]
    sub[crown] = col[crown]
  else:   # a haze of twigs over the crown, and branches that follow the leaves' texture field
    ang = np.arctan2(dx, -(ys - (o["base"] - trunk_h)))
    branches = np.abs(np.sin(n_branch * ang / 2 + phase + 2.0 * leaves)) < 0.22 * (1.2 - np.sqrt(r))
    haze = np.float32(0.45) * (1.0 - 0.5 * r)[..., None]
    sub[crown] = (sub * (1 - haze) + haze * np.array((110, 98, 92), np.float32))[crown]
    sub[crown & branches] = (70, 62, 58)
    sub[trunk] = trunk_col


def render(s: dict, style: str, rng: np.random.Generator, sensor_rng: np.random.Generator | None = None
           ) -> np.ndarray:
  """The scene ``s`` as ``style`` ('summer' or 'winter'): uint8 HxWx3.

  ``rng`` draws the texture fields, in the same order for both styles, so the
  same ``rng`` seed gives both styles the same textures; ``sensor_rng`` (default
  ``rng``) draws the per-pixel sensor noise.
  """
  img = _sky(s, style)
  img = _ground(img, s, style, rng)
  _lake(img, s, style, rng)
  for o in s["objects"]:
    if o["kind"] == "house":
      _house(img, o, style, s)
    else:
      _tree(img, o, style, s, rng)
  if style == "summer":
    img = img * np.array((1.05, 1.0, 0.9), np.float32)
  else:
    gray = img.mean(axis=-1, keepdims=True)
    img = (0.8 * img + 0.2 * gray) * np.array((0.94, 0.98, 1.06), np.float32)
  return finish(img, rng if sensor_rng is None else sensor_rng)
