"""chatgate: a self-hosted, multi-tenant messaging integration gateway."""

__version__ = "0.1.0"
