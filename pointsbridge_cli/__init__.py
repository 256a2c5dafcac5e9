"""The `pointsbridge` command-line tool: operators and integrators drive both services over gRPC."""
