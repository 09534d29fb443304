"""One writer per workdir: the lock that ``jaxgan train`` holds on ``WORKDIR/.jaxgan.lock`` while it runs.

Two trainers on one workdir would resume from the same checkpoint, write the
same temporary step folders and delete each other's checkpoints. So
:func:`jaxgan.train.train_and_evaluate` takes :class:`WorkdirLock` first, before
the checkpoint manager touches anything, and a second run is refused at once
with one line naming the first (host, pid, start time).

How: an exclusive ``fcntl.flock`` on the open lock file, which the kernel
releases when the process dies however it dies (``kill -9`` included), plus a
JSON record in the file (host, pid, start time, command) for the message. The
record is written in place (never replaced: the lock belongs to the file's
inode) and emptied on a clean exit; a record found under a lock that is free
is a run that died without cleaning up (a stale lock): it is taken over with a
log line naming it. The file is never deleted (deleting a lock file lets two
processes lock two different inodes).

Several hosts: only process 0 takes the lock (the processes of one job write
together), so the workdir must be on storage whose locks all hosts see. Linux
maps ``flock`` on NFS (v3 with lockd, v4) to NFS byte-range locks, which do
work across clients; a mount with ``nolock`` / ``local_lock=all`` keeps locks
local to each client, and then two hosts can both take it (the record still
shows the last one). GCS FUSE and other object-store mounts have no locks at
all: there, one run per workdir is the user's responsibility.
"""
from __future__ import annotations

import datetime
import errno
import json
import logging
import os
import socket
import sys
from pathlib import Path

log = logging.getLogger(__name__)

LOCK_NAME = ".jaxgan.lock"


class WorkdirBusyError(RuntimeError):
  """Another run holds the workdir's lock; the message names it (host, pid, start time)."""


def _describe(info: dict | None) -> str:
  if not info:
    return "another process (its details are not readable yet)"
  return (f"host {info.get('host', '?')}, pid {info.get('pid', '?')}, started {info.get('started', '?')}"
          + (f" ({info['command']})" if info.get("command") else ""))


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:   # another user's live process
    return True
  return True


class WorkdirLock:
  """The exclusive lock of one workdir; use as a context manager or call :meth:`acquire` / :meth:`release`.

  ``acquire`` raises :class:`WorkdirBusyError` at once (it never waits) when
  another process holds it, and OSError naming the file when it cannot be
  created (e.g. a read-only workdir).
  """

  def __init__(self, workdir: str | os.PathLike, command: str | None = None) -> None:
    self.path = Path(workdir).absolute() / LOCK_NAME
    if command is None:
      command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
      command = command if len(command) <= 120 else command[:117] + "..."
    self.command = command
    self._fd: int | None = None
    self.taken_over: dict | None = None   # the stale record found on acquire, if any

  @property
  def held(self) -> bool:
    return self._fd is not None

  def read_info(self) -> dict | None:
    """The record in the lock file ({} when empty, None when unreadable)."""
    try:
      text = self.path.read_text()
    except FileNotFoundError:
      return {}
    except OSError:
      return None
    if not text.strip():
      return {}
    try:
      info = json.loads(text)
    except ValueError:
      return None
    return info if isinstance(info, dict) else None

  def acquire(self) -> "WorkdirLock":
    import fcntl  # pylint: disable=import-outside-toplevel  # POSIX only
    if self._fd is not None:
      return self
    try:
      self.path.parent.mkdir(parents=True, exist_ok=True)
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as e:   # a read-only or unwritable workdir: nothing was written
      raise OSError(f"cannot write the lock file {self.path}: {e.strerror or e}; nothing was written (a "
                    "training run needs a writable --workdir)") from e
    try:
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except OSError as e:
        if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
          raise OSError(e.errno, f"cannot lock {self.path} ({e.strerror}); this storage may not support "
                        "file locks", str(self.path)) from e
        raise WorkdirBusyError(
            f"{self.path.parent} is in use by another `jaxgan train`: {_describe(self.read_info())}; wait for it "
            f"to finish or stop it (or use another --workdir). Lock file: {self.path}") from None
      previous = self.read_info()
      if previous:   # a record under a free lock: that run ended without releasing it
        self.taken_over = previous
        here = previous.get("host") == socket.gethostname()
        pid = previous.get("pid")
        why = ("its process is gone" if here and isinstance(pid, int) and not _pid_alive(pid)
               else "it no longer holds the lock")
        log.warning("taking over the stale lock %s of an earlier run (%s): %s", self.path, _describe(previous), why)
      info = {"host": socket.gethostname(), "pid": os.getpid(),
              "started": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
              "command": self.command}
      data = (json.dumps(info) + "\n").encode()
      os.ftruncate(fd, 0)
      os.pwrite(fd, data, 0)
      os.fsync(fd)
    except BaseException:
      os.close(fd)
      raise
    self._fd = fd
    return self

  def release(self) -> None:
    """Empty the record and unlock (the file stays); a no-op when not held."""
    import fcntl  # pylint: disable=import-outside-toplevel
    fd, self._fd = self._fd, None
    if fd is None:
      return
    try:
      os.ftruncate(fd, 0)   # a clean exit: the next run finds no record, hence no stale lock
    except OSError:
      pass
    finally:
      try:
        fcntl.flock(fd, fcntl.LOCK_UN)
      finally:
        os.close(fd)

  def __enter__(self) -> "WorkdirLock":
    return self.acquire()

  def __exit__(self, *exc) -> None:
    self.release()
