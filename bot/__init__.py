"""The in-app support chat: a python-telegram-bot application whose handlers call the core."""
