"""Card-points entrypoints: the gRPC servicers and the server process."""
