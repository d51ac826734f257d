"""/task/<token>: a manual system's task, for its owners, by the signed link mailed to them.
Thin: FulfilmentService.tasks.verify_link shows it, FulfilmentService.complete_task_by_link
answers it (done / a file for the package / "we hold nothing on this person", with a note)."""

from __future__ import annotations

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response

from portal.web import core_of, field, form_of, message_page, render
from rightsdesk.filenames import safe_name
from rightsdesk.fulfilment import FulfilmentError, TaskFile
from rightsdesk.fulfilment.tasks import OUTCOMES
from rightsdesk.packages import content_type_of
from rightsdesk.signing import LinkInvalid


async def task_page(request: Request) -> Response:
    token = request.path_params["token"]
    try:
        task = await core_of(request).fulfilment.tasks.verify_link(token)
    except LinkInvalid:  # forged, replaced, answered or expired: one answer
        return message_page(request, 404, "task_title", "task_unavailable")
    return render(request, "task.html.j2", {"task": task, "token": token, "problem": ""})


async def task_answer(request: Request) -> Response:
    token = request.path_params["token"]
    core = core_of(request)
    try:
        task = await core.fulfilment.tasks.verify_link(token)
    except LinkInvalid:
        return message_page(request, 404, "task_title", "task_unavailable")
    form = await form_of(request, files=True)
    if form is None:
        return message_page(request, 403, "refused_title", "csrf_failed")
    outcome = field(form, "outcome", 20)
    note = field(form, "note", 5000)
    upload = form.get("file")
    file = None
    if isinstance(upload, UploadFile) and upload.filename:
        content = await upload.read(core.settings.portal.max_upload_bytes + 1)
        if len(content) > core.settings.portal.max_upload_bytes:
            return message_page(request, 413, "refused_title", "too_large")
        name = safe_name(upload.filename)
        file = TaskFile(name, content_type_of(name, upload.content_type), content)
    problem = ""
    if outcome not in OUTCOMES:
        problem = "task_choose"
    elif outcome == "file" and file is None:
        problem = "task_need_file"
    elif outcome == "nothing" and not note.strip():
        problem = "task_need_note"
    if problem:
        return render(
            request, "task.html.j2", {"task": task, "token": token, "problem": problem}, 400
        )
    try:
        await core.fulfilment.complete_task_by_link(token, outcome, note, file)
    except LinkInvalid:
        return message_page(request, 404, "task_title", "task_unavailable")
    except FulfilmentError:
        return message_page(request, 400, "task_title", "task_refused")
    return message_page(request, 200, "task_title", "task_thanks")
