"""Adapters room: the gRPC client of the e-commerce service."""
