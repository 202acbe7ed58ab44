"""The Telegram Bot API provider: webhook Updates in, Bot API calls out."""
