"""The development stack (`make run`) as a real process, on ports it picks."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support import ROOT

_UP = re.compile(rb"cardpoints on localhost:(\d+), ecommerce on localhost:(\d+)")
_METRICS = re.compile(rb"Metrics: cardpoints on localhost:(\d+), ecommerce on localhost:(\d+)")
_SIGN_IN = re.compile(rb"(http://127\.0\.0\.1:\d+)/dev/sign-in\?token=[\w.-]+")


class DevStack:
    def __init__(self, var: Path, env: dict[str, str] | None = None) -> None:
        self.var = var
        self.log_path = var / "devstack.log"
        var.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pointsbridge_cli.devstack",
                "run",
                "--var",
                str(var),
                "--cardpoints-port",
                "0",
                "--ecommerce-port",
                "0",
                "--cardpoints-metrics-port",
                "0",
                "--ecommerce-metrics-port",
                "0",
                "--storefront-port",
                "0",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            # Publishing only when a test asks for it, whatever the caller's environment.
            env={k: v for k, v in os.environ.items() if k != "POINTSBRIDGE_NATS_URL"} | (env or {}),
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            log = self.log_path.read_bytes()
            found, metrics, sign_in = _UP.search(log), _METRICS.search(log), _SIGN_IN.search(log)
            if found and metrics and sign_in:
                self.cardpoints_port, self.ecommerce_port = int(found[1]), int(found[2])
                self.cardpoints_metrics, self.ecommerce_metrics = int(metrics[1]), int(metrics[2])
                self.storefront_url, self.sign_in_url = sign_in[1].decode(), sign_in[0].decode()
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the stack did not come up:\n{self.log_path.read_text()}")

    @property
    def output(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> int:
        """Ctrl-C, as a person at the terminal would."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(40)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self._log.close()
        return self.process.wait()
