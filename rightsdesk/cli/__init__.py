"""`rightsdesk`: run the service and work tickets from the command line.

One module per command group; each registers its commands on the root `app` of `common`.
"""

from __future__ import annotations

from rightsdesk.cli import (
    accounts,
    classifier,
    fulfil,
    intake,
    outbox,
    reports,
    run,
    status,
    systems,
    tickets,
    users,
)
from rightsdesk.cli import answers as answers  # registers reply, note, templates on tickets
from rightsdesk.cli import packages as packages  # registers package, deliver, revoke-link
from rightsdesk.cli.common import app

app.add_typer(run.db_app, name="db")
app.add_typer(accounts.accounts_app, name="accounts")
app.add_typer(tickets.tickets_app, name="tickets")
app.add_typer(reports.audit_app, name="audit")
app.add_typer(intake.intake_app, name="intake")
app.add_typer(outbox.outbox_app, name="outbox")
app.add_typer(classifier.classifier_app, name="classifier")
app.add_typer(systems.systems_app, name="systems")
app.add_typer(fulfil.fulfil_app, name="fulfil")
app.add_typer(users.users_app, name="users")
# `status` is a command of the root app itself (registered on import).
_ = status.status

__all__ = ["app", "main"]


def main() -> None:
    app()
