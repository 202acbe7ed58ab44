"""Envelope encryption: data keys sealed by a key provider (local keyring or Vault transit)."""
