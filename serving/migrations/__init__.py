"""Alembic migrations of the service's database (`serving.stores`); `env.py` is Alembic's entry point."""
