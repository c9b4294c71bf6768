"""yoi Workspace Backend: a RuntimeRegistry over many Runtimes behind one browser-facing API.

- :mod:`.sources`: the embedded source (an in-process Runtime, called directly) and remote
  sources (``yoi-runtime`` processes through ``worker_runtime.client``).
- :mod:`.registry`: the RuntimeRegistry and the SQLite control plane.
- :mod:`.app`: the browser API under ``/api``; :mod:`.cli`: ``yoi-workspace-server``.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
