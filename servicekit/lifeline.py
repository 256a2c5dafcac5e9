"""Run a command that ends when the process that started it ends, however that one dies.

    python -m servicekit.lifeline [--signal NAME] PARENT_PID COMMAND [ARG...]

On Linux the kernel delivers SIGTERM (or the signal named, e.g. KILL) to the command
when PARENT_PID exits, even by SIGKILL (PR_SET_PDEATHSIG, which survives the exec
below), so a supervisor's children never outlive it holding their ports. The command
keeps its own session and process group when started so, and then a Ctrl-C at the
supervisor's terminal still reaches only the supervisor, which stops the children in
order. Elsewhere the command simply runs.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Sequence

PR_SET_PDEATHSIG = 1
DEATH_SIGNAL = signal.SIGTERM  # the servers drain in-flight calls on it, then exit


def command(
    parent_pid: int, argv: Sequence[str], death_signal: signal.Signals = DEATH_SIGNAL
) -> list[str]:
    """The argv that runs `argv` under a lifeline to `parent_pid`."""
    chosen = [] if death_signal == DEATH_SIGNAL else ["--signal", death_signal.name[3:]]
    return [sys.executable, "-m", "servicekit.lifeline", *chosen, str(parent_pid), *argv]


def tie_to_parent(parent_pid: int, death_signal: signal.Signals = DEATH_SIGNAL) -> None:
    """Ask for `death_signal` when the parent exits; exit at once if it already has."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(death_signal), 0, 0, 0) != 0:
            error = ctypes.get_errno()
            raise SystemExit(f"lifeline: prctl(PR_SET_PDEATHSIG) failed: {os.strerror(error)}")
    # The parent may have died before the request took effect: nobody would signal then.
    if os.getppid() != parent_pid:
        raise SystemExit(f"lifeline: parent {parent_pid} is gone; not starting")


USAGE = "usage: python -m servicekit.lifeline [--signal NAME] PARENT_PID COMMAND [ARG...]"


def main(argv: Sequence[str]) -> int:
    argv = list(argv)
    death_signal = DEATH_SIGNAL
    if argv[:1] == ["--signal"] and len(argv) > 1:
        try:
            death_signal = signal.Signals[f"SIG{argv[1].upper()}"]
        except KeyError:
            print(f"lifeline: no signal {argv[1]!r}", file=sys.stderr)
            return 2
        argv = argv[2:]
    if len(argv) < 2 or not argv[0].isdigit():
        print(USAGE, file=sys.stderr)
        return 2
    tie_to_parent(int(argv[0]), death_signal)
    try:
        os.execvp(argv[1], list(argv[1:]))  # noqa: S606  (argv as given, no shell)
    except OSError as error:
        print(f"lifeline: cannot run {argv[1]!r}: {error.strerror}", file=sys.stderr)
        return 127
    return 0  # pragma: no cover  (execvp does not return)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
