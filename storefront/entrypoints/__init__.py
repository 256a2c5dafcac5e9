"""Entrypoints room: the web app, its routes and templates, and the server main."""
