"""Pure domain: entities, enums, errors. Imports nothing else of ours and does no I/O."""
