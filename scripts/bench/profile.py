"""``--profile N``: per-op time of the compiled step from a ``jax.profiler`` trace, grouped by op shape.

Needs ``--xla_cpu_enable_xprof_traceme=true`` in ``XLA_FLAGS`` (``scripts/benchmark.py``
sets it when ``--profile`` is given). Prints the N most expensive groups of ops
of the same shape and kind, with the convolution or dot inside each fusion.
"""
from __future__ import annotations

from bench.common import block


def _hlo_index(text: str) -> dict[str, str]:
  """Instruction name -> short description (op, shape, and for fusions the conv/dot inside)."""
  import re
  comps: dict[str, list[str]] = {}
  cur = None
  for line in text.split("\n"):
    s = line.strip()
    m = re.match(r"^(?:ENTRY )?%?([\w.\-]+) .*\{$", s)
    if line and not line.startswith(" ") and m:
      cur = m.group(1)
      comps[cur] = []
    elif cur is not None and s.startswith(("%", "ROOT")):
      comps[cur].append(s)
  desc = {}
  for lines in comps.values():
    for s in lines:
      m = re.match(r"(?:ROOT )?%([\w.\-]+) = (\S+) ([\w\-]+)\(", s)
      if not m:
        continue
      name, shape, op = m.groups()
      d = f"{op} {shape}"
      inner = s
      cm = re.search(r"calls=%([\w.\-]+)", s)
      if cm and cm.group(1) in comps:
        convs = [x for x in comps[cm.group(1)] if "convolution(" in x or " dot(" in x]
        inner = convs[0] if convs else ""
        if inner:
          d += " <" + re.search(r"= (\S+)", inner).group(1) + ">"
      for pat in (r"window=\{[^}]*\}", r"dim_labels=\S+", r'"kind":"(\w+)"'):
        hit = re.search(pat, inner if pat != r'"kind":"(\w+)"' else s)
        if hit:
          d += " " + hit.group(0).rstrip(",")
      desc[name] = d
  return desc


def profile(compiled, holder, batch, top: int) -> None:
  """Per-op time of two steps from a jax.profiler trace (needs --xla_cpu_enable_xprof_traceme)."""
  import collections
  import glob
  import shutil
  import tempfile
  import jax
  from jax.profiler import ProfileData
  d = tempfile.mkdtemp()
  jax.profiler.start_trace(d)
  for _ in range(2):
    holder["state"], m = compiled(holder["state"], batch)
    block(m)
  jax.profiler.stop_trace()
  data = ProfileData.from_file(sorted(glob.glob(d + "/**/*.xplane.pb", recursive=True))[-1])
  agg: collections.Counter = collections.Counter()
  for plane in data.planes:
    for line in plane.lines:
      if line.name == "python":
        continue
      for ev in line.events:
        if not ev.name.startswith(("ThunkExecutor", "SlinkyThreadPool")):
          agg[ev.name] += ev.duration_ns / 2e6
  shutil.rmtree(d, ignore_errors=True)
  desc = _hlo_index(compiled.as_text())
  groups: collections.Counter = collections.Counter()
  counts: collections.Counter = collections.Counter()
  for name, ms in agg.items():
    key = desc.get(name) or name.rstrip("0123456789.")
    groups[key] += ms
    counts[key] += 1
  print(f"# profile: op time per step {sum(agg.values()):.0f} ms (ops may overlap); "
        f"top {top} groups of ops with the same shape and kind:")
  for key, ms in groups.most_common(top):
    print(f"# {ms:8.1f} ms  x{counts[key]:<3d} {key[:200]}")
