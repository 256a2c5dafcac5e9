"""Entrypoints room: the gRPC servicers and the server's bootstrap."""
