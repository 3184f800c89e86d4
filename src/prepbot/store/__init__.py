"""Persistence: SQLAlchemy models, the database handle and the Alembic migrations.

Imports no chat platform.
"""
