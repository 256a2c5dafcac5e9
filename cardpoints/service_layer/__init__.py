"""Card-points use cases, run inside one unit of work each."""
