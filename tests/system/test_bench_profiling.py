"""The benchmark's profile categories: a sample counts for the work its innermost frames do."""

from __future__ import annotations

from bench.profiling import categorize

LOOP = "Handle._run (asyncio/events.py:80)"
OBSERVED = "with_duties.<locals>.duties (servicekit/observability.py:140)"


def test_the_duties_own_frames_are_not_logging() -> None:
    assert categorize([LOOP, OBSERVED]).startswith("RPC duties")


def test_the_log_line_is_logging_wherever_it_is_called_from() -> None:
    formatting = [LOOP, OBSERVED, "Logger.info (logging/__init__.py:1489)"]
    assert categorize(formatting).startswith("logging")
    assert categorize([LOOP, "JsonFormatter.format (servicekit/observability.py:167)"]).startswith(
        "logging"
    )


def test_the_innermost_match_names_the_work() -> None:
    commit = [
        "deduct_points (cardpoints/service_layer/services.py:252)",
        "SqlUnitOfWork.commit (servicekit/db.py:360)",
        "Connection.exec_driver_sql (sqlalchemy/engine/base.py:1824)",
    ]
    assert categorize(commit) == "SQLAlchemy ORM/Core (Python)"
    assert categorize(commit[:2]) == "service code (domain, use cases, servicers)"
