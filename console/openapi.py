"""The JSON API's OpenAPI document (`/api/v1/openapi.json`)."""

from __future__ import annotations

from typing import Any

from console.actions import ACTIONS
from console.queues import COUNT_CAP, QUEUES, SEARCH_LIMIT


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR}}}


_ERROR = {"$ref": "#/components/schemas/Error"}
_FILTERS = [
    {"name": "queue", "in": "query", "schema": {"type": "string", "enum": list(QUEUES)}},
    {"name": "status", "in": "query", "schema": {"type": "string"}, "description": "comma list"},
    {"name": "type", "in": "query", "schema": {"type": "string"}, "description": "comma list"},
    {"name": "channel", "in": "query", "schema": {"type": "string"}},
    {"name": "assignee", "in": "query", "schema": {"type": "string"}},
    {"name": "from", "in": "query", "schema": {"type": "string", "format": "date"}},
    {"name": "to", "in": "query", "schema": {"type": "string", "format": "date"}},
    {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1}},
    {
        "name": "q",
        "in": "query",
        "schema": {"type": "string", "maxLength": 200},
        "description": "search: a ticket id, email, phone, name, account id, or words of "
        f"what the requester wrote (Chinese or English); the newest {SEARCH_LIMIT} matches, "
        "then the queue and filters apply",
    },
]
_TICKET_ID = {"name": "public_id", "in": "path", "required": True, "schema": {"type": "string"}}
_AUTH = {"401": _error("no token, or a revoked one"), "403": _error("the role may not")}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "rightsdesk console API", "version": "1"},
    "servers": [{"url": "/api/v1"}],
    "security": [{"bearer": []}],
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {
                "type": "object",
                "properties": {
                    "error": {
                        "type": "object",
                        "properties": {
                            "code": {"type": "string"},
                            "message": {"type": "string"},
                            "field": {"type": "string"},
                        },
                        "required": ["code", "message"],
                    }
                },
            }
        },
    },
    "paths": {
        "/me": {
            "get": {
                "summary": "who the token belongs to",
                "responses": {"200": {"description": "the user"}, **_AUTH},
            }
        },
        "/queues": {
            "get": {
                "summary": "ticket counts per queue",
                "description": f"A count above {COUNT_CAP} is given as {COUNT_CAP + 1} "
                "(counting stops there).",
                "responses": {"200": {"description": "counts"}, **_AUTH},
            }
        },
        "/tickets": {
            "get": {
                "summary": "a queue, filtered or searched, most urgent first, paginated",
                "description": f"`total` stops at {COUNT_CAP} (`total_capped`), and so do "
                "pages; each item of a search says what `matched` and shows a `snippet`.",
                "parameters": _FILTERS,
                "responses": {
                    "200": {"description": "items, total, page"},
                    "400": _error("a bad filter; `field` names it"),
                    **_AUTH,
                },
            }
        },
        "/tickets/{public_id}": {
            "get": {
                "summary": "one ticket with messages and audit events; `head` is its version",
                "parameters": [_TICKET_ID],
                "responses": {
                    "200": {"description": "the ticket"},
                    "404": _error("no such ticket"),
                    **_AUTH,
                },
            }
        },
        "/tickets/{public_id}/{action}": {
            "post": {
                "summary": "an action (agent or DPO): " + ", ".join(ACTIONS),
                "description": "Body: the action's fields (assignee, note, reason, until, "
                "completion_until, completion_reason, types, text; merge: `into` or `other`, "
                "a ticket id; dismiss: `confirm_rights_request: true` to dismiss a ticket labelled "
                "as a rights request, else 400 `rights_request`; assign: an enabled user's name "
                "or email, else 400 `unknown_assignee`) and optionally `head` from GET: the "
                "action is refused with 409 if the ticket changed since.",
                "parameters": [
                    _TICKET_ID,
                    {
                        "name": "action",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "enum": list(ACTIONS)},
                    },
                ],
                "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}},
                "responses": {
                    "200": {"description": "the ticket after the action, with its new head"},
                    "400": _error("refused by the ticket rules"),
                    "404": _error("no such ticket"),
                    "409": _error("changed by someone else since `head`"),
                    **_AUTH,
                },
            }
        },
        "/tickets/{public_id}/fulfilment": {
            "get": {
                "summary": "fulfilment: the dry-run plan (rows per statement, sections of an "
                "access package, `plan_hash`) and the runs with their systems",
                "parameters": [_TICKET_ID],
                "responses": {
                    "200": {"description": "plan (or plan_error) and runs"},
                    "404": _error("no such ticket, or no fulfilment on this desk"),
                    **_AUTH,
                },
            }
        },
        "/tickets/{public_id}/fulfilment/approve": {
            "post": {
                "summary": 'run the plan (DPO only): body {"plan_hash": …} from the GET',
                "parameters": [_TICKET_ID],
                "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}},
                "responses": {
                    "200": {"description": "the runs after it"},
                    "400": _error("no plan_hash"),
                    "409": _error("refused: the plan changed since (stale hash), or not allowed"),
                    **_AUTH,
                },
            }
        },
        "/tickets/{public_id}/package/deliver": {
            "post": {
                "summary": "deliver the response package (agent or DPO): a link to the portal "
                "on the ticket's channel; the answer is the package's state",
                "parameters": [_TICKET_ID],
                "responses": {
                    "200": {
                        "description": "the package: status, delivered_at, opened_at, "
                        "downloads, expires_at, files"
                    },
                    "400": _error("nothing to deliver, or not allowed now"),
                    "404": _error("no such ticket, or packages not configured"),
                    **_AUTH,
                },
            }
        },
        "/users": {
            "get": {
                "summary": "the console's users (DPO only)",
                "responses": {"200": {"description": "users"}, **_AUTH},
            }
        },
    },
}
