"""Rate limiting (GCRA token buckets): in memory in embedded mode, Redis when configured.

A top-level package rather than part of `api/` because the send workers use the same
limiter for provider budgets (per bot, chat, group, number).
"""
