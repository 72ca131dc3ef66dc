"""The one place scenarios are bound: every feature under ``features/``."""

from pytest_bdd import scenarios

scenarios(".")
