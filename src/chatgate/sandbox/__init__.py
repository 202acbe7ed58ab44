"""Stand-ins for outside services, for tests and demos on machines where the real ones cannot run."""
