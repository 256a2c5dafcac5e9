"""Command-line options that fall back to environment variables, shown in --help."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any


class ConfigError(ValueError):
    """Settings that cannot work together; the server refuses to start and says why."""


class EnvParser(argparse.ArgumentParser):
    """An ArgumentParser whose options also read `<PREFIX>_<NAME>` from the environment.

    Flags win over the environment, which wins over the default.
    """

    def __init__(self, env_prefix: str, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(**kwargs)
        self.env_prefix = env_prefix

    def option(
        self,
        flag: str,
        *,
        default: Any,
        help: str,
        type: Callable[[str], Any] = str,
        choices: list[str] | None = None,
    ) -> None:
        env = f"{self.env_prefix}_{flag.lstrip('-').replace('-', '_').upper()}"
        raw = os.environ.get(env)
        value = type(raw) if raw is not None else default
        self.add_argument(
            flag, default=value, type=type, choices=choices, help=f"{help} [env: {env}]"
        )


def boolean(text: str) -> bool:
    """Parse yes/no style values from flags and the environment."""
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def read_secret(path: str) -> str:
    """The stripped contents of a secret file ("" when no path is given)."""
    if not path:
        return ""
    try:
        with open(path, encoding="utf-8") as secret:
            return secret.read().strip()
    except OSError as error:
        raise ConfigError(f"cannot read {path!r}: {error.strerror}") from None
