"""Fault injection for PointsBridge: a TCP fault proxy and the exactly-once chaos harness.

`python -m chaos.harness --help` runs both services as real processes, drives concurrent
clients against them while SIGKILLing and restarting each service, then checks the
invariants I1-I6 of DESIGN.md across both systems and runs `pointsbridge reconcile`.
"""
