"""The command groups of the `pointsbridge` CLI, one module per group."""
