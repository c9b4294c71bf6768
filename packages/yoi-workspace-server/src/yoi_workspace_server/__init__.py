"""yoi Workspace Backend: a RuntimeRegistry over many Runtimes behind one browser-facing API.

Not built yet; this package reserves the import name. See the repository's issues.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
