"""Use cases. Each service gets its collaborators injected by `bootstrap`."""
