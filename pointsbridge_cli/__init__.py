"""The `pointsbridge` command-line tool: operators and integrators drive both services over gRPC."""

import os

# gRPC's core logs a failed TLS handshake on stderr at INFO before the call fails; the
# CLI tells each failure in a sentence of its own, so only the core's errors may show.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
