"""Email intake: bytes to InboundMessage, the SMTP receiver, the IMAP watcher (issue #4)."""
