"""Shared fixtures. Real database/cache servers come from tests/servers.py."""

from __future__ import annotations

pytest_plugins = ["tests.servers"]
