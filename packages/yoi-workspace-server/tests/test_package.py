"""The Workspace Backend distribution builds and imports."""

from __future__ import annotations

import yoi_workspace_server


def test_package_imports_with_a_version() -> None:
    """The yoi_workspace_server import package exists and reports its version."""
    assert yoi_workspace_server.__version__ == "0.1.0"
    assert yoi_workspace_server.__all__ == ["__version__"]
