"""Imported by every Python process of a test session run with ``--constant-tower TOWER``
(tests/conftest.py puts this folder first on PYTHONPATH and sets CMH_CONSTANT_TOWER), so that
the entry points the tests start as child processes have the constant tower too."""

import os

if os.environ.get("CMH_CONSTANT_TOWER"):
    from constant_tower_patch import make_constant

    make_constant(os.environ["CMH_CONSTANT_TOWER"])
