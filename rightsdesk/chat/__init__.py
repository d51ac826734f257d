"""Conversations with the in-app support bot: the desk's side of a chat.

The bot (bot/) stores every update raw in the Inbox before anything else, then calls one
method of `ChatDesk` per update. Each call is one transaction that claims the stored update
(an update replayed after a crash is handled once), moves the conversation on, opens or
changes tickets, and queues the replies in the outbox; the bot's sender sends them after the
commit. The conversation lives in `chatconversation`, so a restart resumes where the user was.

    idle ── text ──> classified ── not sure ──────────────> triage ticket ("a person reads it")
      │                  ├── not about personal information ──> pointed to support, no ticket
      │                  └── types found ──> confirming (buttons: the types, "something else")
      │                                          │ a button
      │                                          v
      │      ticket opened ── none: open │ manual: documents │ linked: verified │ identity
      │                                                                            │ account named
      │                                                                            v
      │                                                    code (sent to the registered email)
      └── text while a ticket is active: joins that ticket (/new starts another request)

The parts: `updates.py` (what an update is: `ChatUpdate`, `ChatDocument`, `update_key`,
`language_of`), `conversation.py` (the plumbing every update goes through: claiming the stored
update, the conversation row, the rate limit, saying things), `desk.py` (`ChatDesk`: the
commands, free text, buttons, documents and the steps of a request).
"""

from rightsdesk.chat.desk import ChatDesk
from rightsdesk.chat.updates import ACTOR, ChatDocument, ChatUpdate, language_of, update_key

__all__ = ["ACTOR", "ChatDesk", "ChatDocument", "ChatUpdate", "language_of", "update_key"]
