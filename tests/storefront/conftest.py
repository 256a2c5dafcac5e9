"""Fixtures of the browser tests: the services, Chromium, and a fresh page per test.

test_pages.py has its own `stack` and `browser` (a fake service, an HTTP client).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from playwright.async_api import (
    Browser,
    BrowserContext,
    Page,
    async_playwright,
)

from tests.auth import Callers
from tests.storefront.browser import (
    DESKTOP,
    WAIT_MS,
    launch,
)
from tests.storefront.stack import Stack, start_stack


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory, auth: Callers) -> AsyncIterator[Stack]:
    running = await start_stack(tmp_path_factory.mktemp("storefront"), auth)
    yield running
    await running.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await launch(playwright)
        yield launched
        await launched.close()


@pytest_asyncio.fixture(loop_scope="module")
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    made = await browser.new_context(viewport=DESKTOP, locale="en-US")
    made.set_default_timeout(WAIT_MS)
    yield made
    await made.close()


@pytest_asyncio.fixture(loop_scope="module")
async def page(context: BrowserContext) -> Page:
    return await context.new_page()
