"""Repositories: all queries live here. Tenant-owned data is reached only through a
repository constructed with a tenant id, which every query filters by."""
