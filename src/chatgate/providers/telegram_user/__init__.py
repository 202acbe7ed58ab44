"""Telegram user accounts over MTProto (Telethon), as opposed to the Bot API provider.

`client.AccountClient` is the interface the login flows and the account runtime use;
`telethon_client.TelethonAccountClient` implements it over `telethon.TelegramClient` and
`fake.FakeAccountClient` over an in-process `fake.FakeTelegram` that raises Telethon's own
errors and produces Telethon's own event objects. `errors` maps Telethon's errors to ours,
`sessions` (de)serializes sessions, `parsing` turns Telethon events into stored raw payloads
and those payloads into provider-neutral events.
"""
