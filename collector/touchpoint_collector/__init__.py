"""Touchpoint's server side: the collector, the ClickHouse store and the journey-map engine.

Installed with the ``collector`` extra (``pip install 'touchpoint[collector]'``).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("touchpoint")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"
