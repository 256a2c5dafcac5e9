"""Run a command that ends when the process that started it ends, however that one dies.

    python -m servicekit.lifeline PARENT_PID COMMAND [ARG...]

On Linux the kernel delivers SIGTERM to the command when PARENT_PID exits, even by
SIGKILL (PR_SET_PDEATHSIG, which survives the exec below), so a supervisor's children
never outlive it holding their ports. The command keeps its own session and process
group, so a Ctrl-C at the supervisor's terminal still reaches only the supervisor,
which stops the children in order. Elsewhere the command simply runs.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Sequence

PR_SET_PDEATHSIG = 1
DEATH_SIGNAL = signal.SIGTERM  # the servers drain in-flight calls on it, then exit


def command(parent_pid: int, argv: Sequence[str]) -> list[str]:
    """The argv that runs `argv` under a lifeline to `parent_pid`."""
    return [sys.executable, "-m", "servicekit.lifeline", str(parent_pid), *argv]


def tie_to_parent(parent_pid: int) -> None:
    """Ask for DEATH_SIGNAL when the parent exits; exit at once if it already has."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(DEATH_SIGNAL), 0, 0, 0) != 0:
            error = ctypes.get_errno()
            raise SystemExit(f"lifeline: prctl(PR_SET_PDEATHSIG) failed: {os.strerror(error)}")
    # The parent may have died before the request took effect: nobody would signal then.
    if os.getppid() != parent_pid:
        raise SystemExit(f"lifeline: parent {parent_pid} is gone; not starting")


def main(argv: Sequence[str]) -> int:
    if len(argv) < 2 or not argv[0].isdigit():
        print("usage: python -m servicekit.lifeline PARENT_PID COMMAND [ARG...]", file=sys.stderr)
        return 2
    tie_to_parent(int(argv[0]))
    try:
        os.execvp(argv[1], list(argv[1:]))  # noqa: S606  (argv as given, no shell)
    except OSError as error:
        print(f"lifeline: cannot run {argv[1]!r}: {error.strerror}", file=sys.stderr)
        return 127
    return 0  # pragma: no cover  (execvp does not return)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
