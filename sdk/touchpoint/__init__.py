"""Touchpoint SDK: tag customer touchpoints from shops and backends."""

__version__ = "0.1.0"
