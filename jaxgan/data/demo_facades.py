"""The ``demo:facades`` scene: a building facade as a label map (A) and a photo-like rendering (B).

Twelve classes laid out by a structured rule -- sky, the roof (slate or tile),
the wall (one of four materials: cream plaster, ochre plaster, grey stone,
red brick), cornices between floors, a grid of windows, balconies in front of
some floors, a door and shop windows on the ground floor.

The photo is a function of the label map up to texture noise: every property
of the rendering that is drawn per scene (the wall and roof material) has its
own label class, and everything else random -- plaster blotches, the tone of
each brick and where its joints fall, stone grain, clouds, the goods in the
shop windows, wood grain, sensor noise -- comes from the separate noise
generator, which a second rendering (``noise=1``) redraws. Details are
anchored to what the labels show (brick courses to the floor grid, railing
bars to the balcony's centre, tile lines to the roof's top) and the rendering
is left-right symmetric, so crops and flips of a pair stay predictable. Label
-> photo still needs context: a balcony label is mostly the window or wall
behind it, window glass darkens towards its bottom and into its recess, and
walls are shaded under cornices.

Everything is vectorised: label masks are outer products of per-row and
per-column masks.
"""
from __future__ import annotations

import numpy as np

from jaxgan.data.demo_common import finish, value_noise, vertical_gradient

CLASSES = ("sky", "roof_slate", "roof_tile", "wall_plaster", "wall_ochre", "wall_stone", "wall_brick",
           "cornice", "window", "door", "balcony", "shop")
(SKY, ROOF_SLATE, ROOF_TILE, WALL_PLASTER, WALL_OCHRE, WALL_STONE, WALL_BRICK, CORNICE, WINDOW, DOOR, BALCONY,
 SHOP) = range(12)
ROOFS = (ROOF_SLATE, ROOF_TILE)
WALLS = (WALL_PLASTER, WALL_OCHRE, WALL_STONE, WALL_BRICK)

LABEL_COLORS = np.array([
    (20, 40, 160),    # sky
    (120, 0, 60),     # roof_slate
    (200, 40, 20),    # roof_tile
    (40, 110, 255),   # wall_plaster
    (0, 160, 140),    # wall_ochre
    (110, 80, 200),   # wall_stone
    (60, 200, 255),   # wall_brick
    (0, 230, 230),    # cornice
    (255, 200, 0),    # window
    (170, 255, 80),   # door
    (255, 100, 20),   # balcony
    (230, 60, 230),   # shop
], np.uint8)

# Base colour of each class in the photo (classes without a material are never looked up).
_BASE = np.zeros((16, 3), np.float32)
_BASE[ROOF_SLATE], _BASE[ROOF_TILE] = (72, 78, 90), (150, 72, 48)
_BASE[WALL_PLASTER], _BASE[WALL_OCHRE] = (226, 214, 190), (204, 150, 88)
_BASE[WALL_STONE], _BASE[WALL_BRICK] = (150, 150, 146), (166, 84, 62)
_BASE[CORNICE], _BASE[WINDOW], _BASE[DOOR], _BASE[SHOP] = (218, 212, 200), (40, 52, 66), (95, 62, 40), (215, 180, 115)
# Extra material ids used only by the rendering.
_MORTAR, _FRAME, _RAIL, _TILE_LINE = 12, 13, 14, 15
_BASE[_MORTAR], _BASE[_FRAME], _BASE[_RAIL] = (190, 165, 145), (236, 236, 228), (45, 45, 50)


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
  # Materials: each one is a label class, so the photo can be predicted from the labels.
  g["wall"] = WALLS[int(rng.integers(len(WALLS)))]
  g["roof"] = ROOFS[int(rng.integers(len(ROOFS)))]
  g["brick_h"] = max(3, int(round(h * 0.016)))
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
  cls[top:, left:right] = g["wall"]
  cls[top:top + g["roof_h"], left:right] = g["roof"]
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
  xs = np.arange(w, dtype=np.float32)
  if g["balcony_full"]:
    bal_cols = (xs >= left + cw * 0.05) & (xs < right - cw * 0.05)
    bal_dx = np.abs(xs - (left + right - 1) / 2)          # railing bars are placed from the balcony's centre
  else:
    bal_cols = in_col & (lx >= wx0 - ww * 0.18) & (lx < wx0 + ww * 1.18)
    bal_dx = np.abs(lx - (cw - 1) / 2)
  cls[np.ix_(bal_rows, bal_cols)] = BALCONY
  aux = dict(ly=ly, lx=lx, fi=fi, ci=ci, wy0=wy0, wx0=wx0, wh=wh, ww=ww, fh=fh, cw=cw, ct=ct, u1=u1,
             bal_rows=bal_rows, bal_top=wy0 + wh - bh, bal_dx=bal_dx, gy=gy, size=min(h, w))
  return cls, under, aux


def _window_detail(g: dict, aux: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Per-pixel window-local (x, y) in [0, 1] and a frame mask (outer products of 1-D fields)."""
  wy = (aux["ly"] - aux["wy0"]) / aux["wh"]
  gwy = (aux["gy"] - float(g["ground_h"]) * 0.25) / aux["wh"]
  wy = np.where(aux["gy"] >= 0, gwy, wy).astype(np.float32)   # ground-floor windows have their own rows
  wx = ((aux["lx"] - aux["wx0"]) / aux["ww"]).astype(np.float32)
  ft = max(1.0, aux["size"] / 96)                              # frame width in pixels
  ft_y, ft_x = ft / aux["wh"], ft / aux["ww"]
  fy = (wy < ft_y) | (wy > 1 - ft_y)
  fx = (wx < ft_x) | (wx > 1 - ft_x)
  if g["mullion"]:
    fx |= np.abs(wx - 0.5) < ft_x * 0.5
    fy |= np.abs(wy - 0.38) < ft_y * 0.5
  frame = fy[:, None] | fx[None, :]
  return wx, wy, frame


def _walls(g: dict, aux: dict, wall: np.ndarray, mat: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """Brightness (float32 HxW) of the wall pixels for the wall's material; marks brick mortar in ``mat``."""
  h, w = wall.shape
  kind = g["wall"]
  if kind == WALL_BRICK:
    bh = g["brick_h"]
    ly = np.floor(np.maximum(aux["ly"], 0)).astype(np.int32)     # courses restart at every floor
    ly = np.where(aux["fi"] >= 0, ly, np.arange(h))
    course = ly // bh
    row_mortar = (ly % bh) == 0
    # Head joints: a random offset per course, every 2 * bh pixels (noise: a second rendering moves them).
    offset = rng.integers(0, 2 * bh, h)[course % h]
    col = np.arange(w)[None, :] + offset[:, None]
    mortar = row_mortar[:, None] | ((col % (2 * bh)) == 0)
    brick_id = (course[:, None] * 131 + col // (2 * bh)) % 4096
    mod = rng.uniform(0.88, 1.1, 4096).astype(np.float32)[brick_id]
    mat[wall & mortar] = _MORTAR
    return mod
  if kind == WALL_STONE:   # fine grain
    return 0.9 + 0.2 * value_noise(rng, h, w, max(4, w // 3))
  return 0.94 + 0.12 * value_noise(rng, h, w, 12)   # plaster blotches


def _render(g: dict, cls: np.ndarray, under: np.ndarray, aux: dict, rng: np.random.Generator) -> np.ndarray:
  """The photo (float32 HxWx3, 0..255 scale before noise) of the facade.

  Built as a material map (uint8 HxW) times a brightness field (float32 HxW):
  the per-pixel work stays on single-channel arrays, and the sky is blended in last.
  """
  h, w = cls.shape
  table = _BASE.copy()
  table[_TILE_LINE] = _BASE[g["roof"]] * 0.6
  mat = under.copy()
  mod = np.ones((h, w), np.float32)
  wall = under == g["wall"]
  mod = np.where(wall, _walls(g, aux, wall, mat, rng), mod)
  # Cornices (slightly uneven stone) cast a shadow on the wall just below.
  cornice = under == CORNICE
  mod = np.where(cornice, 0.95 + 0.1 * rng.random((h, w), dtype=np.float32), mod)
  if g["cornice"]:
    below = (aux["fi"] > 0) & (aux["ly"] < aux["ct"] * 0.8)
    mod[below[:, None] & wall] *= 0.72
  # Roof tile lines, counted from the roof's top.
  tile = ((np.arange(h) - g["top"]) % max(2, g["roof_h"] // 3) == 0)[:, None]
  mat[(under == g["roof"]) & tile] = _TILE_LINE
  # Windows: glass reflecting the sky (bright at the top, symmetric), a recess shadow along the top, frames.
  wx, wy, frame = _window_detail(g, aux)
  window = under == WINDOW
  refl = 1.0 + 2.0 * np.clip(1.0 - 1.3 * wy[:, None] - 0.6 * np.abs(wx[None, :] - 0.5), 0, 1)
  recess = (wy[:, None] < 0.12) | (np.abs(wx[None, :] - 0.5) > 0.42)
  mod = np.where(window, np.where(recess, refl * 0.55, refl), mod)
  mat[window & frame] = _FRAME
  mod[window & frame] = 1.0
  # Shop windows: lit warm interiors with darker goods; the door: wood grain along x.
  shop = under == SHOP
  if shop.any():
    mod = np.where(shop, 0.7 + 0.3 * value_noise(rng, h, w, 10), mod)
  door = under == DOOR
  if door.any():
    grain = value_noise(rng, 2, w, 1, aspect=w / 2.0)[0]
    mod = np.where(door, (0.85 + 0.3 * grain)[None, :], mod)
  # Balconies: railing bars; between them the window/wall behind, in shade.
  bal = cls == BALCONY
  if bal.any():
    period = max(3, int(round(aux["cw"] / 7)))
    bars = ((np.round(aux["bal_dx"]).astype(np.int32) % period) < max(1, period // 3))[None, :]
    top_rail = (aux["ly"] - aux["bal_top"] < 2.5)[:, None]
    rail = (bars | top_rail) & bal
    mod[bal] *= 0.62
    mat[rail] = _RAIL
    mod[rail] = 1.0
  img = table[mat] * mod[..., None]
  # Sky with faint horizontal clouds, where no building is.
  sky = vertical_gradient(h, w, (95, 150, 215), (185, 210, 235))
  clouds = np.clip(value_noise(rng, h, w, 6, aspect=0.5) * 2.0 - 1.3, 0, 1)[..., None]
  sky += clouds * (0.6 * (245 - sky))
  return np.where((cls == SKY)[..., None], sky, img)


def generate(scene_rng: np.random.Generator, noise_rng: np.random.Generator, h: int, w: int
             ) -> tuple[np.ndarray, np.ndarray]:
  """(label map, photo): two uint8 HxWx3 arrays of one facade."""
  g = _layout(scene_rng, h, w)
  cls, under, aux = _labels(g, h, w)
  photo = finish(_render(g, cls, under, aux, noise_rng), noise_rng)
  return LABEL_COLORS[cls], photo
