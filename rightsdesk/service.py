"""The composition root: builds the desk from settings, wires the channels, runs until told to stop.

This is the one module of the core that may import the adapters (intake/, bot/, scheduler/).
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import signal
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from sqlalchemy.exc import InterfaceError, OperationalError

from bot.door import TelegramDoor, derived_webhook_secret
from bot.transport import TelegramTransport
from classifiers.model import META_FILE, MODEL_DIR, LazyRightsClassifier, model_exists
from console.app import build_app
from console.server import ConsoleServer
from intake.imap import ImapWatcher
from intake.mail import parse_email
from intake.smtp import SmtpReceiver
from portal.app import build_portal
from portal.server import PortalServer
from portal.web import PortalCore
from rightsdesk.accounts import AccountDirectory, CompanyDirectory
from rightsdesk.answers import Answers
from rightsdesk.chat import ChatDesk
from rightsdesk.classifying import OffLoopClassifier
from rightsdesk.clock import Clock, SystemClock
from rightsdesk.config import Settings
from rightsdesk.db import Database
from rightsdesk.deadlines import DeadlinePolicy
from rightsdesk.desk_parts import DeskParts
from rightsdesk.followups import FollowUps
from rightsdesk.fulfilment import FulfilmentService
from rightsdesk.leadership import run_as_leader
from rightsdesk.merging import TicketMerger
from rightsdesk.models import Channel
from rightsdesk.notices import DpoAlerts, RequesterNotices
from rightsdesk.offload import CpuPool
from rightsdesk.outbound import Outbox
from rightsdesk.package_access import PackageAccess
from rightsdesk.packages import PackageService
from rightsdesk.pipeline import Classifier, Inbox, IntakePipeline, IntakeWorker, TriageEverything
from rightsdesk.search import TicketSearch
from rightsdesk.sending import MailTransport, OutboundSender
from rightsdesk.signing import MessageIdSigner, load_signing_key, signer_for
from rightsdesk.staff import StaffService
from rightsdesk.stray import StrayMail
from rightsdesk.supervision import Supervisor, describe
from rightsdesk.templating import Templates
from rightsdesk.tickets import TicketService
from rightsdesk.verification import Verifier
from rightsdesk.webforms import WebForms, parse_web
from rightsdesk.webstack import HttpServer
from rightsdesk.withdrawal import Withdrawals
from scheduler.runner import Scheduler

log = logging.getLogger("rightsdesk.service")

SHUTDOWN_GRACE_SECONDS = 4.0


class StartupError(Exception):
    """The service cannot start; the message names the cause in one line."""


def default_classifier(settings: Settings) -> Classifier:
    """The trained model when there is one; otherwise everything goes to the DPO's triage."""
    if not settings.classifier.enabled:
        return TriageEverything()
    path = settings.classifier.model_path or MODEL_DIR
    if not model_exists(path):
        log.warning(
            "no trained classifier at %s: every request goes to triage "
            "(run `rightsdesk classifier train`)",
            path,
        )
        return TriageEverything()
    return LazyRightsClassifier(path)


@dataclass
class Desk:
    """The core objects, built once from settings and shared by every channel and command."""

    settings: Settings
    clock: Clock
    db: Database
    policy: DeadlinePolicy
    tickets: TicketService
    accounts: AccountDirectory
    signer: MessageIdSigner
    inbox: Inbox
    pipeline: IntakePipeline
    outbox: Outbox
    verifier: Verifier
    sender: OutboundSender
    classifier: Classifier
    chat: ChatDesk
    fulfilment: FulfilmentService
    staff: StaffService
    # One service per group of the DPO's actions, for the CLI now and the web console next.
    search: TicketSearch
    merger: TicketMerger
    stray: StrayMail
    withdrawals: Withdrawals
    supervisor: Supervisor
    answers: Answers
    cpu: CpuPool  # parsing and classifying, off the event loop
    # The requester portal's core: response packages, the link's pages, the two forms.
    packages: PackageService
    package_access: PackageAccess
    webforms: WebForms

    @classmethod
    def build(
        cls, settings: Settings, clock: Clock | None = None, classifier: Classifier | None = None
    ) -> Desk:
        clock = clock or SystemClock()
        db = Database(settings.database)
        policy = DeadlinePolicy(settings.deadlines, settings.desk.tz)
        signer = signer_for(settings)
        outbox = Outbox(settings, signer, clock)
        tickets = TicketService(db, clock, policy, RequesterNotices(settings, outbox))
        accounts = AccountDirectory(db, clock)
        directory: AccountDirectory | CompanyDirectory = accounts
        if settings.verification.account_query:
            directory = CompanyDirectory(
                settings.secret("verification", "account_database_url") or settings.database.url,
                settings.verification.account_query,
                clock,
                username_query=settings.verification.account_username_query,
            )
        verifier = Verifier(
            settings.verification, load_signing_key(settings), clock, tickets, outbox, directory
        )
        parts = DeskParts(settings, db, clock, tickets, outbox)
        fulfilment = FulfilmentService(parts, load_signing_key(settings))
        tickets.resolve_checks.append(fulfilment.check_resolve)
        parse_mail = partial(
            parse_email,
            trusted_authserv_ids=frozenset(a.lower() for a in settings.mail.trusted_authserv_ids),
            attachment_cap=settings.mail.max_attachment_bytes,
        )
        inbox = Inbox(db, clock)
        alerts = DpoAlerts(settings, outbox)
        classifier = classifier or default_classifier(settings)
        withdrawals = Withdrawals(settings, clock, tickets, outbox)
        supervisor = Supervisor(db, clock, settings.service)
        cpu = CpuPool()
        off_loop = OffLoopClassifier(classifier, settings.classifier, cpu)
        followups = FollowUps(settings, tickets, outbox)
        pipeline = IntakePipeline.standard(
            db,
            clock,
            tickets,
            signer,
            parsers={
                Channel.EMAIL.value: parse_mail,
                Channel.WEB.value: partial(parse_web, templates=outbox.templates),
            },
            classifier=off_loop,
            verifier=verifier,
            outbox=outbox,
            withdrawals=withdrawals,
            cpu=cpu,
            acknowledgements_per_hour=settings.mail.acknowledgements_per_hour,
            alerts=alerts,
            followups=followups,
            route_attempts=settings.mail.route_attempts,
            batch_size=settings.mail.route_batch_size,
            batch_seconds=settings.mail.route_batch_seconds,
            own_addresses=settings.own_addresses(),
        )
        key = load_signing_key(settings)
        answers = Answers(parts)
        packages = PackageService(parts, fulfilment, cpu)
        answers.resolve_guards.append(packages.check_resolve)
        fulfilment.tasks.file_sink = packages.take_task_file
        return cls(
            settings=settings,
            clock=clock,
            db=db,
            policy=policy,
            tickets=tickets,
            accounts=accounts,
            signer=signer,
            inbox=inbox,
            pipeline=pipeline,
            outbox=outbox,
            verifier=verifier,
            sender=OutboundSender(
                db,
                clock,
                outbox,
                MailTransport(settings),
                doors=inbox,
                replica=supervisor.replica,
            ),
            classifier=classifier,
            chat=ChatDesk(
                settings, db, clock, tickets, verifier, outbox, off_loop, alerts, followups
            ),
            fulfilment=fulfilment,
            staff=StaffService(db, clock, settings.console),
            search=TicketSearch(db),
            merger=TicketMerger(tickets),
            stray=StrayMail(db, clock, pipeline, tickets),
            withdrawals=withdrawals,
            supervisor=supervisor,
            answers=answers,
            cpu=cpu,
            packages=packages,
            package_access=PackageAccess(parts, packages, cpu, key),
            webforms=WebForms(parts, inbox, pipeline, key),
        )

    async def close(self) -> None:
        await self.inbox.close()
        self.cpu.close()
        await self.fulfilment.dispose()
        if isinstance(self.verifier.directory, CompanyDirectory):
            await self.verifier.directory.dispose()
        await self.db.dispose()


def portal_core(desk: Desk) -> PortalCore:
    """What the portal's routes call: the core services of the requester's side."""
    return PortalCore(
        settings=desk.settings,
        packages=desk.package_access,
        forms=desk.webforms,
        fulfilment=desk.fulfilment,
        templates=desk.outbox.templates,
        key=load_signing_key(desk.settings),
    )


def telegram_door(desk: Desk, token: str) -> TelegramDoor:
    settings = desk.settings
    return TelegramDoor(
        settings.telegram,
        token,
        desk.inbox,
        desk.db,
        desk.clock,
        desk.chat,
        webhook_secret=settings.secret("telegram", "webhook_secret")
        or derived_webhook_secret(load_signing_key(settings)),
    )


async def serve_chat(desk: Desk, door: TelegramDoor, stop: asyncio.Event) -> None:
    """The bot, once the Bot API answers: the door, and the sender of chat replies, each
    supervised on its own."""
    if not await door.start(stop):
        return
    chat_sender = OutboundSender(
        desk.db,
        desk.clock,
        desk.outbox,
        TelegramTransport(door.bot),
        Channel.TELEGRAM,
        replica=desk.supervisor.replica,
    )

    async def receive(stop: asyncio.Event) -> None:
        if desk.settings.telegram.mode == "polling":
            # Telegram allows one getUpdates consumer per bot: one replica polls at a time.
            await run_as_leader(desk.db, "telegram-poller", door.run, stop)
        else:
            await door.run(stop)

    supervise = desk.supervisor.supervise
    await asyncio.gather(
        supervise("telegram-door", receive, stop), supervise("chat-sender", chat_sender.run, stop)
    )


def model_version(desk: Desk) -> str:
    """Which classifier answers: its architecture and the version every ticket's
    classification records (`RightsClassifier.version`), so `status` and a ticket agree."""
    if not isinstance(desk.classifier, LazyRightsClassifier):
        return "none: every request goes to triage"
    meta = Path(desk.classifier.path) / META_FILE
    try:
        data = json.loads(meta.read_bytes())
    except OSError as exc:
        return f"unreadable ({describe(exc)})"
    except ValueError:
        return "unreadable (not JSON)"
    return f"{data.get('architecture', '?')} {data.get('version') or '?'}"


async def _open_web_door(
    door: str,
    server: HttpServer,
    stop: asyncio.Event,
    tasks: list[asyncio.Task[None]],
    supervisor: Supervisor,
) -> str:
    """Bind `server` (a taken port ends start-up with one line), serve it until `stop`, and
    say where: "console=http://127.0.0.1:8080"."""
    try:
        port = server.bind()
    except OSError as exc:
        where = f"{server.host}:{server.wanted_port}"
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise StartupError(f"cannot listen for the {door} on {where}: {reason}") from None
    tasks.append(asyncio.create_task(server.run(stop), name=door))
    await supervisor.report(door, "up", detail=f"{server.host}:{port}")
    return f"{door}={'https' if server.tls else 'http'}://{server.host}:{port}"


def first_line(exc: BaseException) -> str:
    """An exception as one line, without the driver's multi-line detail."""
    text = str(getattr(exc, "orig", None) or exc)
    return text.splitlines()[0] if text else type(exc).__name__


def configure_logging(settings: Settings) -> None:
    # Log lines carry ticket ids and counts, never addresses or message text (personal data).
    logging.basicConfig(
        level=settings.logging.level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # aiosmtpd logs every SMTP command, MAIL FROM and RCPT TO addresses included.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    # APScheduler announces every tick; our jobs log what they actually do.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    # httpx logs every request URL, and the Bot API's URLs carry the bot token.
    logging.getLogger("httpx").setLevel(logging.WARNING)


async def warm_up(desk: Desk) -> Classifier:
    """Before the first message: the classifier loaded (off the loop: spaCy and jieba take
    seconds, and loading one in the CPU pool mid-burst held the GIL from the doors for tens of
    milliseconds at a time), then everything alive frozen out of the collector's reach. The
    model is hundreds of thousands of objects that live as long as the service: a full
    collection over them paused every thread for 150-350 ms. Returns the classifier."""
    if isinstance(lazy := desk.classifier, LazyRightsClassifier):
        await asyncio.to_thread(lambda: lazy.model)
        log.info("classifier loaded from %s", lazy.path)
    gc.collect()
    gc.freeze()
    return desk.classifier


async def run_service(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Migrate, start every configured channel, and run until SIGTERM/SIGINT (or `stop`)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    desk = Desk.build(settings)
    tasks: list[asyncio.Task[None]] = []
    receiver: SmtpReceiver | None = None
    timer: Scheduler | None = None
    door: TelegramDoor | None = None
    try:
        try:
            await desk.db.migrate()
        except (OSError, OperationalError, InterfaceError) as exc:
            raise StartupError(f"database unreachable: {first_line(exc)}") from None
        if isinstance(lazy := await warm_up(desk), LazyRightsClassifier):
            # SIGHUP: load a new model now (it is also noticed within seconds on its own).
            loop.add_signal_handler(signal.SIGHUP, lambda: loop.run_in_executor(None, lazy.reload))
        changed = await desk.tickets.recompute_provisional_deadlines()
        if changed:
            log.info("recomputed provisional deadlines of %d ticket(s)", len(changed))
        supervisor = desk.supervisor
        await supervisor.start()
        # A predecessor killed mid-send (kill -9) left claims: they go out now, not in 5 min.
        await supervisor.release_stale_claims()
        await supervisor.report("classifier", "up", detail=model_version(desk))
        doors = []
        # The ports first (SMTP, console, portal): when one is taken, start-up ends with one
        # line, before any task or scheduler tick has begun (one cancelled mid-query printed a
        # traceback).
        if settings.smtp.enabled:
            receiver = SmtpReceiver(
                settings.smtp,
                settings.mail,
                desk.inbox,
                settings.desk.privacy_addresses,
                cpu=desk.cpu,
            )
            try:
                await receiver.start()
            except OSError as exc:
                where = f"{settings.smtp.host}:{settings.smtp.port}"
                reason = os.strerror(exc.errno) if exc.errno else str(exc)
                raise StartupError(f"cannot listen for SMTP on {where}: {reason}") from None
            doors.append(f"smtp={settings.smtp.host}:{receiver.port}")
            await supervisor.report("smtp", "up", detail=f"{settings.smtp.host}:{receiver.port}")
        if settings.console.enabled:
            company = settings.desk.company_name
            console = ConsoleServer(
                settings.console,
                build_app(
                    settings.console,
                    desk.tickets,
                    desk.staff,
                    company,
                    desk.answers,
                    Templates(
                        settings.outbound.templates_dir, settings.desk.company_name
                    ).replies(),
                    search=desk.search,
                    merger=desk.merger,
                    fulfilment=desk.fulfilment,
                    packages=desk.packages,
                ),
            )
            doors.append(await _open_web_door("console", console, stop, tasks, supervisor))
        if settings.portal.enabled:
            portal = PortalServer(settings.portal, build_portal(portal_core(desk)))
            doors.append(await _open_web_door("portal", portal, stop, tasks, supervisor))
        tasks.append(asyncio.create_task(supervisor.beat(stop), name="heartbeat"))
        # The worker first routes whatever a crash left stored but unprocessed.
        worker = IntakeWorker(
            desk.pipeline, desk.inbox, retry_max_seconds=settings.mail.route_retry_max_seconds
        )
        tasks.append(supervisor.task("intake-worker", worker.run, stop))
        tasks.append(supervisor.task("outbound-sender", desk.sender.run, stop))
        timer = Scheduler(desk) if settings.scheduler.enabled else None
        if timer is not None:
            timer.start()
            await supervisor.report("scheduler", "up")
        if settings.imap.enabled:
            watcher = ImapWatcher(
                settings.imap,
                settings.secret("imap", "password") or "",
                settings.mail,
                desk.inbox,
                desk.db,
                desk.clock,
            )
            # One replica at a time reads the mailbox; another takes over if it dies.
            lead = partial(run_as_leader, desk.db, "imap-watcher", watcher.run)
            tasks.append(supervisor.task("imap-watcher", lead, stop))
            doors.append(f"imap={settings.imap.host}:{settings.imap.port}")
        token = settings.secret("telegram", "token")
        if token:
            door = telegram_door(desk, token)
            tasks.append(asyncio.create_task(serve_chat(desk, door, stop), name="telegram"))
            doors.append(f"telegram={settings.telegram.mode}")
        log.info(
            "rightsdesk ready: database=%s %s",
            desk.db.url.get_backend_name(),
            " ".join(doors) or "(no doors open)",
        )
        await stop.wait()
        log.info("stopping")
    finally:
        stop.set()
        if timer is not None:
            timer.stop()
        if receiver is not None:
            await receiver.stop()  # no new mail first; what was acknowledged is stored
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=SHUTDOWN_GRACE_SECONDS)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if door is not None:
            await door.close()
        await desk.close()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        log.info("stopped")
