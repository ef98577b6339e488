"""A small notes app: SQLAlchemy 2.x models, schema managed by Alembic."""
