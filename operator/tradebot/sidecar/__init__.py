"""Programs that run beside a bot, in the bot's own image: standard library only."""
