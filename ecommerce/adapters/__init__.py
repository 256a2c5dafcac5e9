"""Adapters room: SQLAlchemy storage and the gRPC client of the card-points service."""
