"""Background work: queue abstraction, schedulers, leases, runners."""
