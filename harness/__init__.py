"""Harness helpers that need pytest or allure (the library never imports them)."""
