"""Debian's Chromium through Playwright: found on the system, never downloaded."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from urllib.parse import urlencode

import pytest
from playwright.async_api import APIResponse, Browser, Page, Playwright, ViewportSize, expect

from tests.storefront.stack import Stack
from tests.support import ROOT

# `make screenshots` points this at docs/images/, the README's pictures; an ordinary
# test run writes them to a scratch folder so that it leaves the checkout unchanged.
SCREENSHOT_DIR = "POINTSBRIDGE_SCREENSHOT_DIR"
DESKTOP: ViewportSize = {"width": 1280, "height": 900}
PHONE: ViewportSize = {"width": 375, "height": 740}
WAIT_MS = 10_000  # what a page gets to show what a test expects of it
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    """The system Chromium; skipped locally when missing, a failure under CI=true."""
    found = shutil.which("chromium") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
    )
    if found is None:
        message = "Chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}; CI must run the browser tests")
        pytest.skip(message)
    return found


async def launch(playwright: Playwright) -> Browser:
    return await playwright.chromium.launch(
        executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS
    )


def images_dir() -> Path:
    chosen = os.environ.get(SCREENSHOT_DIR)
    folder = Path(chosen) if chosen else Path(tempfile.gettempdir()) / "pointsbridge-screenshots"
    folder = folder if folder.is_absolute() else ROOT / folder
    folder.mkdir(parents=True, exist_ok=True)
    return folder


async def screenshot(page: Page, name: str) -> None:
    """storefront-<name>-desktop.png and -phone.png of the page as it is."""
    images = images_dir()
    viewport = page.viewport_size or DESKTOP
    await page.set_viewport_size(DESKTOP)
    await page.screenshot(path=str(images / f"storefront-{name}-desktop.png"), full_page=True)
    await page.set_viewport_size(PHONE)
    await page.screenshot(path=str(images / f"storefront-{name}-phone.png"), full_page=True)
    await page.set_viewport_size({"width": viewport["width"], "height": viewport["height"]})


async def horizontal_overflow(page: Page) -> int:
    """How many pixels the page is wider than its viewport (0 when it fits)."""
    return int(
        await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
    )


# ---------------------------------------------------------------- driving the pages


async def sign_in(page: Page, stack: Stack, token: str) -> None:
    await page.goto(f"{stack.url}/dev/sign-in?token={token}")
    await expect(page.locator("h1")).to_have_text("Coupons to redeem")


async def quoted(page: Page, points: str) -> None:
    await expect(page.locator("#quote-points")).to_have_text(points)


async def form_fields(page: Page, selector: str, **extra: str) -> list[tuple[str, str]]:
    """What the form would post, read from the page (a resubmission sends exactly this)."""
    pairs: list[list[str]] = await page.evaluate(
        "(s) => Array.from(new FormData(document.querySelector(s)).entries())", selector
    )
    return [(k, v) for k, v in pairs] + list(extra.items())


async def post_form(page: Page, url: str, fields: list[tuple[str, str]]) -> APIResponse:
    """POST fields as the browser would, with the page's cookies, not following redirects."""
    return await page.request.post(
        url,
        data=urlencode(fields),
        headers={"content-type": "application/x-www-form-urlencoded"},
        max_redirects=0,
    )
