"""Keyring, passwords, tokens, API keys and redaction."""
