"""Cost of the multi-process stop vote (:class:`jaxgan.preemption.StopAgreement`) per step boundary.

    python scripts/benchmark_preemption.py [--polls 300] [--devices 2]

Starts two processes on localhost (``--devices`` fake CPU devices each, gloo
collectives) and times ``StopAgreement.poll`` on each, two ways: ``idle`` with
20 ms between polls, so the previous vote has finished as it has in training
(the cost the loop pays: building the flag array and dispatching the
all-gather), and ``back_to_back``, where each poll waits for the previous
vote's round trip (an upper bound). Prints medians in microseconds per process
and, last, one JSON line ``{"idle_us": ..., "back_to_back_us": ...}`` (the
larger process's median). Compare with a train step (seconds on CPU).
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _worker(port: int, process_id: int, polls: int) -> None:
  import numpy as np
  sys.path.insert(0, str(ROOT))
  from jaxgan import parallel, preemption
  parallel.initialize_distributed(f"127.0.0.1:{port}", 2, process_id)
  mesh = parallel.make_mesh()
  stop = preemption.StopSignal()   # no handlers needed: nobody signals
  result = {}
  for mode, pause in (("back_to_back", 0.0), ("idle", 0.02)):
    agreement = preemption.StopAgreement(stop, mesh)
    for b in range(1, 21):   # warm-up (compiles the all-gather)
      agreement.poll(b)
    times = []
    for b in range(21, 21 + polls):
      t = time.perf_counter()
      agreement.poll(b)
      times.append(time.perf_counter() - t)
      if pause:
        time.sleep(pause)
    result[mode] = float(np.median(times) * 1e6)
  print(json.dumps(result), flush=True)


def main() -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--polls", type=int, default=300)
  p.add_argument("--devices", type=int, default=2, help="fake CPU devices per process")
  p.add_argument("--_worker", type=int, default=-1, help=argparse.SUPPRESS)
  p.add_argument("--_port", type=int, default=0, help=argparse.SUPPRESS)
  args = p.parse_args()
  if args._worker >= 0:
    _worker(args._port, args._worker, args.polls)
    return 0
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={args.devices}")
  procs = [subprocess.Popen([sys.executable, __file__, "--polls", str(args.polls), "--_worker", str(i),
                             "--_port", str(port)], env=env, stdout=subprocess.PIPE, text=True) for i in range(2)]
  results = []
  for i, proc in enumerate(procs):
    out = proc.communicate(timeout=600)[0]
    if proc.returncode:
      print(out, file=sys.stderr)
      return 1
    results.append(json.loads(out.strip().splitlines()[-1]))
    print(f"process {i}: poll median idle {results[-1]['idle']:.0f} us, back to back "
          f"{results[-1]['back_to_back']:.0f} us")
  print(json.dumps({"idle_us": round(max(r["idle"] for r in results)),
                    "back_to_back_us": round(max(r["back_to_back"] for r in results))}))
  return 0


if __name__ == "__main__":
  sys.exit(main())
