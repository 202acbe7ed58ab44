"""Persistence: SQLAlchemy models, repositories (every query lives here), Alembic migrations."""
