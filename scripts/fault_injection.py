"""Kill `jaxgan train` with SIGKILL at random moments (mid-save included), resume it, and compare the result bit
for bit with a run that was never interrupted. Prints the figures; docs/lifecycle.md keeps the last ones.

  python scripts/fault_injection.py [--cases 3] [--kills 3] [--steps 12] [--seed 0]

Each case trains the same tiny pix2pix run (a checkpoint every step, 3 kept, so that kills land during saves
and rotations) in a fresh workdir: the command is started, killed with SIGKILL after a random delay -- or, for
about half of the kills, the moment a checkpoint's temporary folder appears (mid-save) -- and started again,
`--kills` times, then left to finish. The finished workdir's newest checkpoint must equal the uninterrupted
run's in every array (parameters, optimiser states, BatchNorm statistics, PRNG key), and no restart may be
refused by a killed run's workdir lock (a restart after a kill that held it logs `taking over the stale lock`).
Exit status 1 when any case differs or a restart is refused.
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = {"netG": "unet_32", "ngf": 8, "ndf": 8, "n_layers_D": 2, "load_size": 32, "crop_size": 32,
        "demo_train_size": 12, "demo_test_size": 2, "batch_size": 2, "log_every_steps": 1,
        "checkpoint_every_steps": 1, "keep_checkpoints": 3, "sample_every_steps": 0, "eval_batches": 1}


def command(workdir: Path, steps: int) -> list[str]:
  overrides = [f"--config.{k}={v}" for k, v in {**TINY, "num_train_steps": steps}.items()]
  return [sys.executable, "-m", "jaxgan", "train", "--config", "pix2pix_demo", "--workdir", str(workdir), *overrides]


def saves_under_way(workdir: Path) -> set:
  """(name, inode) of the checkpoint temporary folders now (a killed save leaves one until the next start)."""
  folder = workdir / "checkpoints"
  try:
    return {(p.name, p.stat().st_ino) for p in folder.iterdir() if ".orbax-checkpoint-tmp" in p.name}
  except OSError:
    return set()


def run_to_end(workdir: Path, steps: int, env: dict) -> tuple[int, str, float]:
  t = time.perf_counter()
  proc = subprocess.run(command(workdir, steps), env=env, cwd=ROOT, capture_output=True, text=True, timeout=1800)
  return proc.returncode, proc.stderr, time.perf_counter() - t


def kill_once(workdir: Path, steps: int, env: dict, rng: random.Random, span: float) -> dict:
  """Start the run and SIGKILL it: at a random moment, or (half the time) as soon as a save is under way."""
  wait_for_save = rng.random() < 0.5
  delay = rng.uniform(0.0, span)
  proc = subprocess.Popen(command(workdir, steps), env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
  start = time.perf_counter()
  leftovers = saves_under_way(workdir)   # from an earlier kill: not this run's save
  during_save = False
  while proc.poll() is None:
    elapsed = time.perf_counter() - start
    saving = bool(saves_under_way(workdir) - leftovers)
    if (wait_for_save and saving) or (not wait_for_save and elapsed >= delay) or elapsed > 4 * span:
      proc.send_signal(signal.SIGKILL)
      during_save = bool(saves_under_way(workdir) - leftovers)
      break
    time.sleep(0.001 if wait_for_save else 0.01)
  err = proc.communicate()[1]
  return {"killed": proc.returncode == -signal.SIGKILL, "mid_save": during_save, "after_s": time.perf_counter() - start,
          "finished_first": proc.returncode == 0, "stderr": err}


def leaves(workdir: Path) -> list:
  import logging  # pylint: disable=import-outside-toplevel
  logging.getLogger("absl").setLevel(logging.ERROR)
  import jax  # pylint: disable=import-outside-toplevel
  from jaxgan import inference  # pylint: disable=import-outside-toplevel
  state, _, step = inference.load_for_inference(workdir)
  return [step, *jax.tree.leaves(jax.device_get(state))]


def equal(a: list, b: list) -> bool:
  import numpy as np  # pylint: disable=import-outside-toplevel
  return len(a) == len(b) and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b))


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--cases", type=int, default=3, help="independent runs to kill and resume")
  parser.add_argument("--kills", type=int, default=3, help="SIGKILLs per case before it may finish")
  parser.add_argument("--steps", type=int, default=12, help="training steps of the tiny run")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  rng = random.Random(args.seed)
  root = Path(tempfile.mkdtemp(prefix="jaxgan-faults-"))
  env = dict(os.environ, JAXGAN_CACHE_DIR=str(root / "cache"), PYTHONUNBUFFERED="1")
  rc, err, wall = run_to_end(root / "reference", args.steps, env)
  if rc != 0:
    print(err[-3000:], file=sys.stderr)
    return 1
  rc, _, warm = run_to_end(root / "warm", args.steps, env)   # the start-up a restart pays, caches warm
  reference = leaves(root / "reference")
  print(f"reference: {args.steps} steps, {wall:.1f} s cold, {warm:.1f} s with warm caches; workdirs in {root}")
  totals = {"kills": 0, "mid_save": 0, "takeovers": 0, "refused": 0, "exact": 0, "restarts_s": []}
  for case in range(args.cases):
    workdir = root / f"case{case}"
    kills = []
    for _ in range(args.kills):
      k = kill_once(workdir, args.steps, env, rng, warm)
      if k["finished_first"]:
        break
      kills.append(k)
    rc, err, seconds = run_to_end(workdir, args.steps, env)
    outputs = [k["stderr"] for k in kills[1:]] + [err]   # the starts that followed a kill
    takeovers = sum("taking over the stale lock" in o for o in outputs)
    refused = sum("in use by another" in o for o in outputs)
    exact = rc == 0 and equal(leaves(workdir), reference)
    totals["kills"] += len(kills)
    totals["mid_save"] += sum(k["mid_save"] for k in kills)
    totals["takeovers"] += takeovers
    totals["refused"] += refused
    totals["exact"] += int(exact)
    totals["restarts_s"].append(seconds)
    print(f"case {case}: {len(kills)} SIGKILL(s) at "
          + ", ".join(f"{k['after_s']:.1f} s{' (mid-save)' if k['mid_save'] else ''}" for k in kills)
          + f"; final run exit {rc} in {seconds:.1f} s; stale locks taken over {takeovers}, refused {refused}; "
          + ("bit-identical to the uninterrupted run" if exact else "DIFFERS from the uninterrupted run"))
  print(f"total: {args.cases} cases, {totals['kills']} SIGKILLs ({totals['mid_save']} during a checkpoint write), "
        f"{totals['takeovers']} stale locks taken over, {totals['refused']} restarts refused by a dead run's lock, "
        f"{totals['exact']}/{args.cases} resumed runs bit-identical")
  return 0 if totals["exact"] == args.cases and totals["refused"] == 0 else 1


if __name__ == "__main__":
  sys.exit(main())
