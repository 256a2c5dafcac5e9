"""Service layer room: use cases over a unit of work and the points gateway."""
