"""The sample app at a module attribute, for ``conveyor worker --app tests.worker.cli_app:app``.

Its URL and settings come from CONVEYOR_* variables, like any app that names no database.
"""

from __future__ import annotations

from tests.worker.sample_app import build_app

app = build_app()
