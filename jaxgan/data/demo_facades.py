"""The ``demo:facades`` scene: a building facade as a label map (A) and a photo-like rendering (B).

Eight classes laid out by a structured rule -- sky, roof, wall, cornices between
floors, a grid of windows, balconies in front of some floors, a door and shop
windows on the ground floor. The rendering gives each class its material
(plaster or brick walls, framed glass with reflections and recess shadows,
wooden door with grain, railings through which the window behind shows, tiled
roof, cloudy sky, lit shop windows), a directional shading gradient and sensor
noise. Label -> photo needs context (a balcony label is mostly the window or
wall behind it), so neither copying the labels nor a per-class colour map
solves it.

Everything is vectorised: label masks are outer products of per-row and
per-column masks.
"""
from __future__ import annotations

import numpy as np

from jaxgan.data.demo_common import finish, value_noise, vertical_gradient

CLASSES = ("sky", "roof", "wall", "cornice", "window", "door", "balcony", "shop")
SKY, ROOF, WALL, CORNICE, WINDOW, DOOR, BALCONY, SHOP = range(8)

LABEL_COLORS = np.array([
    (20, 40, 160),    # sky
    (160, 30, 30),    # roof
    (40, 110, 255),   # wall
    (0, 230, 230),    # cornice
    (255, 200, 0),    # window
    (170, 255, 80),   # door
    (255, 100, 20),   # balcony
    (230, 60, 230),   # shop
], np.uint8)

_WALLS = np.array([(205, 185, 150), (165, 85, 65), (150, 150, 150), (225, 215, 195), (195, 145, 90),
                   (180, 190, 170)], np.float32)
_ROOFS = np.array([(90, 60, 55), (70, 75, 85), (140, 70, 50)], np.float32)


def _layout(rng: np.random.Generator, h: int, w: int) -> dict:
  """Geometry and materials of one facade (every scene-level random draw happens here)."""
  g = {}
  g["top"] = int(h * rng.uniform(0.05, 0.2))
  g["left"] = int(w * rng.uniform(0.02, 0.1)) if rng.random() < 0.5 else 0
  g["right"] = w - (int(w * rng.uniform(0.02, 0.1)) if rng.random() < 0.5 else 0)
  g["roof_h"] = max(2, int(h * rng.uniform(0.03, 0.08)))
  g["ground_h"] = max(4, int(h * rng.uniform(0.17, 0.25)))
  g["n_floors"] = int(rng.integers(2, 6))
  g["n_cols"] = int(rng.integers(3, 7))
  g["wf"], g["hf"] = rng.uniform(0.35, 0.6), rng.uniform(0.42, 0.62)
  g["cornice"] = rng.random() < 0.7
  g["cornice_f"] = rng.uniform(0.07, 0.13)
  g["balcony_floors"] = rng.random(g["n_floors"]) < rng.uniform(0.0, 0.7)
  g["balcony_full"] = rng.random() < 0.3
  g["door_col"] = int(rng.integers(g["n_cols"]))
  g["shops"] = rng.random() < 0.6
  g["mullion"] = rng.random() < 0.6
  # Materials.
  g["wall_rgb"] = _WALLS[rng.integers(len(_WALLS))] + rng.uniform(-12, 12, 3).astype(np.float32)
  g["brick"] = rng.random() < 0.4
  g["brick_h"] = max(3, int(h * rng.uniform(0.012, 0.02)))
  g["roof_rgb"] = _ROOFS[rng.integers(len(_ROOFS))]
  g["frame_rgb"] = np.array((235, 235, 228) if rng.random() < 0.6 else (60, 50, 45), np.float32)
  g["door_rgb"] = np.array((95, 62, 40), np.float32) * rng.uniform(0.8, 1.25)
  g["rail_rgb"] = np.array((45, 45, 50), np.float32) * rng.uniform(0.8, 1.4)
  g["light"] = rng.uniform(-0.35, 0.35, 2).astype(np.float32)   # shading gradient along x, y
  return g


def _grid_coords(n: int, start: float, cell: float, count: int) -> tuple[np.ndarray, np.ndarray]:
  """Cell index and offset inside the cell for pixel centres 0..n-1 (index -1 outside the grid)."""
  pos = np.arange(n, dtype=np.float32) - start
  idx = np.floor(pos / cell).astype(np.int32)
  local = pos - idx * cell
  idx[(pos < 0) | (idx >= count)] = -1
  return idx, local


def _labels(g: dict, h: int, w: int) -> tuple[np.ndarray, np.ndarray, dict]:
  """(class map with balconies, class map under balconies, auxiliary per-row/column fields)."""
  cls = np.full((h, w), SKY, np.uint8)
  left, right, top = g["left"], g["right"], g["top"]
  cls[top:, left:right] = WALL
  cls[top:top + g["roof_h"], left:right] = ROOF
  u0, u1 = top + g["roof_h"], h - g["ground_h"]
  fh = (u1 - u0) / g["n_floors"]
  cw = (right - left) / g["n_cols"]
  fi, ly = _grid_coords(h, u0, fh, g["n_floors"])
  ci, lx = _grid_coords(w, left, cw, g["n_cols"])
  ct = max(2.0, fh * g["cornice_f"])
  wh, ww = fh * g["hf"], cw * g["wf"]
  wy0, wx0 = (fh - ct - wh) * 0.5, (cw - ww) / 2
  in_floor, in_col = fi >= 0, ci >= 0
  if g["cornice"]:
    rows = in_floor & (ly >= fh - ct)
    cls[np.ix_(rows, in_col)] = CORNICE
  win_rows = in_floor & (ly >= wy0) & (ly < wy0 + wh)
  win_cols = in_col & (lx >= wx0) & (lx < wx0 + ww)
  cls[np.ix_(win_rows, win_cols)] = WINDOW
  # Ground floor: door in one column, shop windows or plain windows in the others.
  gy = np.arange(h, dtype=np.float32) - u1
  gh = float(g["ground_h"])
  dw = cw * 0.5
  door_cols = in_col & (ci == g["door_col"]) & (np.abs(lx - cw / 2) < dw / 2)
  door_rows = gy >= gh * 0.22
  shop_rows = (gy >= gh * 0.22) & (gy < gh * 0.88)
  if g["shops"]:
    shop_cols = in_col & (ci != g["door_col"]) & (lx >= cw * 0.1) & (lx < cw * 0.9)
    cls[np.ix_(shop_rows, shop_cols)] = SHOP
  else:
    gw_rows = (gy >= gh * 0.25) & (gy < gh * 0.25 + wh)
    cls[np.ix_(gw_rows, win_cols & (ci != g["door_col"]))] = WINDOW
  cls[np.ix_(door_rows, door_cols)] = DOOR
  under = cls.copy()
  # Balconies in front of the lower part of the windows of some floors.
  bal_floor = np.zeros(h, bool)
  bal_floor[in_floor] = g["balcony_floors"][fi[in_floor]]
  bh = wh * 0.38
  bal_rows = bal_floor & (ly >= wy0 + wh - bh) & (ly < wy0 + wh + ct * 0.3)
  if g["balcony_full"]:
    bal_cols = (np.arange(w) >= left + cw * 0.05) & (np.arange(w) < right - cw * 0.05)
  else:
    bal_cols = in_col & (lx >= wx0 - ww * 0.18) & (lx < wx0 + ww * 1.18)
  cls[np.ix_(bal_rows, bal_cols)] = BALCONY
  aux = dict(ly=ly, lx=lx, fi=fi, ci=ci, wy0=wy0, wx0=wx0, wh=wh, ww=ww, fh=fh, cw=cw, ct=ct, u1=u1,
             bal_rows=bal_rows, bal_top=wy0 + wh - bh, gy=gy)
  return cls, under, aux


def _window_detail(g: dict, aux: dict, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Per-pixel window-local (x, y) in [0, 1] and a frame mask (outer products of 1-D fields)."""
  wy = (aux["ly"] - aux["wy0"]) / aux["wh"]
  gwy = (aux["gy"] - float(g["ground_h"]) * 0.25) / aux["wh"]
  wy = np.where(aux["gy"] >= 0, gwy, wy).astype(np.float32)   # ground-floor windows have their own rows
  wx = ((aux["lx"] - aux["wx0"]) / aux["ww"]).astype(np.float32)
  ft_y, ft_x = 2.2 / aux["wh"], 2.2 / aux["ww"]
  fy = (wy < ft_y) | (wy > 1 - ft_y)
  fx = (wx < ft_x) | (wx > 1 - ft_x)
  if g["mullion"]:
    fx |= np.abs(wx - 0.5) < ft_x * 0.5
    fy |= np.abs(wy - 0.38) < ft_y * 0.5
  frame = fy[:, None] | fx[None, :]
  return wx, wy, frame


# Extra material ids (beyond the classes) used only by the rendering.
_MORTAR, _FRAME, _RAIL, _TILE_LINE = 8, 9, 10, 11


def _render(g: dict, cls: np.ndarray, under: np.ndarray, aux: dict, rng: np.random.Generator) -> np.ndarray:
  """The photo (float32 HxWx3, 0..255 scale before noise) of the facade.

  Built as a material map (uint8 HxW) times a brightness field (float32 HxW):
  the per-pixel work stays on single-channel arrays, and the sky is blended in last.
  """
  h, w = cls.shape
  table = np.zeros((12, 3), np.float32)
  table[WALL], table[ROOF], table[CORNICE] = g["wall_rgb"], g["roof_rgb"], (218, 212, 200)
  table[WINDOW], table[DOOR], table[SHOP] = (40, 52, 66), g["door_rgb"], (215, 180, 115)
  table[_MORTAR], table[_FRAME], table[_RAIL], table[_TILE_LINE] = (200, 195, 185), g["frame_rgb"], g["rail_rgb"], \
      g["roof_rgb"] * 0.6
  mat = under.copy()
  mod = np.ones((h, w), np.float32)
  # Walls: plaster blotches or a brick bond with per-brick tone.
  wall = under == WALL
  plaster = 0.93 + 0.14 * value_noise(rng, h, w, 12)
  if g["brick"]:
    bh = g["brick_h"]
    row = np.arange(h) // bh
    shift = (row % 2) * bh
    col = np.arange(w)[None, :] + shift[:, None]
    mortar = ((np.arange(h) % bh) == 0)[:, None] | ((col % (2 * bh)) == 0)
    brick_id = (row[:, None] * 977 + col // (2 * bh)) % 4096
    plaster = plaster * rng.uniform(0.88, 1.1, 4096).astype(np.float32)[brick_id]
    mat[wall & mortar] = _MORTAR
  mod = np.where(wall, plaster, mod)
  # Cornices (slightly uneven stone) cast a shadow on the wall just below.
  cornice = under == CORNICE
  mod = np.where(cornice, 0.95 + 0.1 * rng.random((h, w), dtype=np.float32), mod)
  below = (aux["fi"] > 0) & (aux["ly"] < aux["ct"] * 0.8)
  mod[below[:, None] & wall] *= 0.72
  # Roof tile lines.
  tile = ((np.arange(h) - g["top"]) % max(2, g["roof_h"] // 3) == 0)[:, None]
  mat[(under == ROOF) & tile] = _TILE_LINE
  # Windows: glass with a diagonal sky reflection, recess shadow on top/left, frames.
  wx, wy, frame = _window_detail(g, aux, h, w)
  window = under == WINDOW
  refl = 1.0 + 2.1 * np.clip(1.2 - (wx[None, :] + wy[:, None]), 0, 1)
  recess = (wy[:, None] < 0.12) | (wx[None, :] < 0.08)
  mod = np.where(window, np.where(recess, refl * 0.55, refl), mod)
  mat[window & frame] = _FRAME
  mod[window & frame] = 1.0
  # Shop windows: lit warm interiors with dark goods; the door: wood grain along x.
  shop = under == SHOP
  if shop.any():
    mod = np.where(shop, 0.6 + 0.5 * value_noise(rng, h, w, 10), mod)
  door = under == DOOR
  if door.any():
    grain = value_noise(rng, 2, w, 1, aspect=w / 2.0)[0]
    mod = np.where(door, (0.8 + 0.4 * grain)[None, :], mod)
  # Balconies: railing bars; between them the window/wall behind, in shade.
  bal = cls == BALCONY
  if bal.any():
    period = max(3, int(round(aux["cw"] / 7)))
    bars = ((np.arange(w) % period) < max(1, period // 3))[None, :]
    top_rail = (aux["ly"] - aux["bal_top"] < 2.5)[:, None]
    rail = (bars | top_rail) & bal
    mod[bal] *= 0.62
    mat[rail] = _RAIL
    mod[rail] = 1.0
  # Directional light on the building.
  ys = np.linspace(-0.5, 0.5, h, dtype=np.float32)[:, None]
  xs = np.linspace(-0.5, 0.5, w, dtype=np.float32)[None, :]
  mod *= 1.0 + g["light"][0] * xs + g["light"][1] * ys
  img = table[mat] * mod[..., None]
  # Sky with horizontal clouds, where no building is.
  sky = vertical_gradient(h, w, (95, 150, 215), (185, 210, 235))
  clouds = np.clip(value_noise(rng, h, w, 6, aspect=0.5) * 2.2 - 1.3, 0, 1)[..., None]
  sky += clouds * (245 - sky)
  return np.where((cls == SKY)[..., None], sky, img)


def generate(scene_rng: np.random.Generator, noise_rng: np.random.Generator, h: int, w: int
             ) -> tuple[np.ndarray, np.ndarray]:
  """(label map, photo): two uint8 HxWx3 arrays of one facade."""
  g = _layout(scene_rng, h, w)
  cls, under, aux = _labels(g, h, w)
  photo = finish(_render(g, cls, under, aux, noise_rng), noise_rng)
  return LABEL_COLORS[cls], photo
