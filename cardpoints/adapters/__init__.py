"""Card-points adapters: SQLAlchemy tables, repositories and migrations."""
