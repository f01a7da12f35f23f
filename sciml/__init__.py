"""sciml: the shared core of the toolkit.

Subpackages are imported explicitly (``from sciml import sparse``); importing
``sciml`` itself loads nothing heavy, prints nothing, probes no GPU and sets no
environment variable.
"""

__version__ = "0.1.0.dev0"

__all__ = ["__version__"]
