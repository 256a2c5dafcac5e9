"""Cross-cutting plumbing both services share: errors, validation, storage, server bootstrap."""
