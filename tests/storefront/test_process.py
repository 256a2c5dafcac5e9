"""`storefront-server` as a real process: its help, its refusals to start, serving and SIGTERM."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import fields

import httpx

from storefront.entrypoints.settings import Settings
from tests.auth import Callers
from tests.support import ROOT, start_server

MODULE = [sys.executable, "-m", "storefront.entrypoints.server"]


def test_help_documents_every_setting_with_its_environment_variable() -> None:
    shown = subprocess.run(
        [*MODULE, "--help"], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    for setting in fields(Settings):
        assert f"--{setting.name.replace('_', '-')}" in shown
        assert f"POINTSBRIDGE_STOREFRONT_{setting.name.upper()}" in " ".join(shown.split())


def test_plain_http_beyond_loopback_is_refused_unless_asked_for() -> None:
    refused = subprocess.run(
        [*MODULE, "--address", "0.0.0.0:0", "--log-format", "json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert refused.returncode == 2
    assert "refusing plain HTTP on 0.0.0.0" in refused.stderr
    half = subprocess.run(
        [*MODULE, "--tls-cert", "cert.pem", "--log-format", "json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert half.returncode == 2 and "--tls-cert and --tls-key go together" in half.stderr


def test_it_serves_on_port_zero_and_stops_on_sigterm(auth: Callers) -> None:
    # No ecommerce behind it: pages that need it say so, with the request id.
    server = start_server(
        [
            *MODULE,
            "--address",
            "127.0.0.1:0",
            "--ecommerce-address",
            "127.0.0.1:9",
            "--call-timeout",
            "1",
            "--log-format",
            "json",
        ]
    )
    try:
        base = f"http://127.0.0.1:{server.port}"
        with httpx.Client(base_url=base, timeout=10) as client:
            assert client.get("/healthz").json() == {"status": "ok"}
            page = client.get("/sign-in")
            csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
            token = auth.token("alice", "customer")
            down = client.post(
                "/sign-in",
                data={"csrf": csrf, "token": token},
                headers={"x-request-id": "down-1"},
            )
            assert down.status_code == 503
            assert "cannot be reached" in down.text and "down-1" in down.text
            assert client.get("/dev/sign-in").status_code == 404  # off unless asked for
    finally:
        assert server.stop() == 0
    lines = [json.loads(line) for line in server.log().splitlines()]
    access = [e for e in lines if e["logger"] == "storefront.access"]
    assert {"GET /healthz", "POST /sign-in"} <= {f"{e['method']} {e['path']}" for e in access}
    assert token not in server.log()
