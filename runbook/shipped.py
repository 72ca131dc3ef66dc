"""What ships inside the package beside the library: the runbook's text, the feature files,
the bound scenarios and their pytest configuration.

Every path here is inside the installed package, so ``runbook`` works from any directory
with nothing but the package installed. In the repository ``runbook/RUNBOOK.md`` is a link to
``docs/RUNBOOK.md`` (the one copy edited); a built wheel holds its bytes.
"""

from __future__ import annotations

from pathlib import Path

#: The package's own directory.
PACKAGE = Path(__file__).resolve().parent
#: The directory the package sits in: the root of a source checkout, or ``site-packages``.
SOURCE = PACKAGE.parent
#: The runbook the features restate (``docs/RUNBOOK.md`` in the repository).
RUNBOOK = PACKAGE / "RUNBOOK.md"
#: The runbook's scenarios in Gherkin.
FEATURES = PACKAGE / "features"
#: The one module binding every feature (pytest-bdd's ``scenarios``).
SCENARIOS = PACKAGE / "steps" / "test_runbook.py"
#: The scenarios' pytest configuration (markers aside: the harness registers those).
PYTEST_INI = PACKAGE / "pytest.ini"
