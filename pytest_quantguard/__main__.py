"""``python -m pytest_quantguard``: the `quantguard` console script."""

from pytest_quantguard.cli import main

raise SystemExit(main())
