"""One process of a two-process job that only votes: ``python preemption_worker.py PORT PROCESS_ID GO_FILE``.

Used by tests/test_preemption.py. It joins the job (2 CPU devices per process,
gloo), prints ``ready``, waits for GO_FILE (so that a test can signal it before
its loop), then polls :class:`jaxgan.preemption.StopAgreement` at up to 600
boundaries, 50 ms apart, printing ``boundary N`` at each and ``stop N REASON``
when the processes agree to stop.
"""
from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")


def main() -> int:
  port, process_id, go_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
  from jaxgan import parallel, preemption
  parallel.initialize_distributed(f"127.0.0.1:{port}", 2, process_id)
  mesh = parallel.make_mesh()
  print("ready", flush=True)
  while not os.path.exists(go_file):
    time.sleep(0.02)
  with preemption.StopSignal() as stop:
    agreement = preemption.StopAgreement(stop, mesh)
    for boundary in range(1, 601):
      print(f"boundary {boundary}", flush=True)
      reason = agreement.poll(boundary)
      if reason is not None:
        print(f"stop {boundary} {reason}", flush=True)
        return 0
      time.sleep(0.05)
  print("never stopped", flush=True)
  return 3


if __name__ == "__main__":
  sys.exit(main())
