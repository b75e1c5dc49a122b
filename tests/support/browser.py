"""Helpers for the Playwright dashboard tests."""
from __future__ import annotations


def log_in(page, base_url: str, username: str, password: str, *, wait: bool = True) -> None:
    """Log in through the real login form; by default wait for a dashboard page title."""
    page.goto(f"{base_url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    if wait:
        page.wait_for_selector("[data-testid=page-title]")


def wait_for_images(page, selector: str) -> None:
    """Every image matching `selector` has loaded (so a screenshot shows pictures, not blanks)."""
    page.wait_for_function(
        """selector => { const images = [...document.querySelectorAll(selector)];
             return images.length > 0 && images.every(image => image.complete && image.naturalWidth > 0); }""",
        arg=selector,
    )
