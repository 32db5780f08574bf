"""The route table as documentation: an OpenAPI 3.1 document (:func:`openapi`)
and a self-contained HTML page of it (:func:`render_docs`), served by
:func:`with_docs` beside the routes they describe. No I/O.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kadnode.shell.httpserver import (
    ERROR_SCHEMA,
    HTML,
    Payload,
    Request,
    Response,
    Route,
    json_response,
    text_response,
)


@dataclass(frozen=True, slots=True)
class Bearer:
    """For the document: the routes ``needed`` says take a bearer token
    (RFC 6750), described by ``description``."""

    description: str
    needed: Callable[[Route], bool]


def openapi(
    routes: Sequence[Route], title: str, version: str, bearer: Bearer | None = None
) -> dict[str, Any]:
    """The OpenAPI 3.1 document describing exactly ``routes``."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        operation = _operation(route)
        if bearer is not None and bearer.needed(route):
            operation["security"] = [{"token": []}]
            refused = {"description": f"no token, or a wrong one: {bearer.description}"}
            refused["content"] = _content(_error_payload())
            operation["responses"] = {"401": refused, **operation["responses"]}
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    document = {"openapi": "3.1.0", "info": {"title": title, "version": version}, "paths": paths}
    if bearer is not None:
        scheme = {"type": "http", "scheme": "bearer", "description": bearer.description}
        document["components"] = {"securitySchemes": {"token": scheme}}
    return document


def _error_payload() -> Payload:
    return Payload(ERROR_SCHEMA, {"error": "one line saying what went wrong"}, "an error")


def _operation(route: Route) -> dict[str, Any]:
    slug = re.sub(r"[^A-Za-z0-9]+", "_", route.path).strip("_")
    error = _error_payload()
    responses = {str(status): payload for status, payload in route.responses.items()}
    operation: dict[str, Any] = {
        "operationId": f"{route.method.lower()}_{slug}",
        "summary": route.summary,
        "description": route.description,
        "tags": [route.tag],
        "responses": {
            status: {"description": p.description, "content": _content(p)}
            for status, p in {**responses, "default": error}.items()
        },
    }
    params = [("path", p) for p in route.path_params] + [("query", p) for p in route.query_params]
    if params:
        operation["parameters"] = [
            {
                "name": p.name,
                "in": where,
                "required": where == "path" or p.required,
                "description": p.description,
                "schema": p.schema,
                "example": p.example,
            }
            for where, p in params
        ]
    if route.body is not None:
        operation["requestBody"] = {
            "required": True,
            "description": route.body.description,
            "content": _content(route.body),
        }
    return operation


def _content(payload: Payload) -> dict[str, Any]:
    return {payload.media_type: {"schema": payload.schema, "example": payload.example}}


def with_docs(
    routes: Sequence[Route], title: str, version: str, bearer: Bearer | None = None
) -> list[Route]:
    """``routes`` plus GET /openapi.json and GET /docs, both describing all of them."""

    async def openapi_json(_: Request) -> Response:
        return json_response(document)

    async def docs(_: Request) -> Response:
        return text_response(page, HTML)

    example = {"openapi": "3.1.0", "info": {"title": title, "version": version}, "paths": {}}
    full = [
        *routes,
        Route(
            "GET",
            "/openapi.json",
            openapi_json,
            "This API as an OpenAPI 3.1 document",
            {200: Payload({"type": "object"}, example, "the OpenAPI document")},
            tag="docs",
        ),
        Route(
            "GET",
            "/docs",
            docs,
            "This API as a human-readable page",
            {200: Payload({"type": "string"}, "<!doctype html>...", "an HTML page", HTML)},
            tag="docs",
        ),
    ]
    document = openapi(full, title, version, bearer)
    page = render_docs(document)
    return full


def render_docs(document: Mapping[str, Any]) -> str:
    """A self-contained HTML page (no scripts, no external assets) for ``document``."""
    e = html.escape
    info = document["info"]
    operations = [
        (method.upper(), path, op)
        for path, ops in document["paths"].items()
        for method, op in ops.items()
    ]
    out = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{e(info['title'])}</title><style>",
        "body{font:15px/1.45 system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em}",
        "pre,code{font:13px ui-monospace,monospace}",
        "pre{background:#f4f4f4;padding:.6em;overflow:auto}table{border-collapse:collapse}",
        "td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left}",
        "section{border-top:1px solid #ccc;margin-top:2em}</style></head><body>",
        f"<h1>{e(info['title'])} {e(info['version'])}</h1>",
        "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a> (OpenAPI 3.1).</p><ul>",
        *(
            f"<li><a href='#{e(op['operationId'])}'><code>{method} {e(path)}</code></a> "
            f"{e(op['summary'])}</li>"
            for method, path, op in operations
        ),
        "</ul>",
    ]
    for method, path, op in operations:
        out += [
            f"<section id='{e(op['operationId'])}'><h2><code>{method} {e(path)}</code></h2>",
            f"<p><b>{e(op['summary'])}</b></p><p>{e(op['description'])}</p>",
        ]
        if "parameters" in op:
            out.append(
                "<h3>Parameters</h3><table><tr><th>name</th><th>in</th><th>required</th>"
                "<th>schema</th><th>example</th><th>description</th></tr>"
            )
            out += [
                f"<tr><td><code>{e(p['name'])}</code></td><td>{e(p['in'])}</td>"
                f"<td>{'yes' if p['required'] else 'no'}</td><td><code>{e(_show(p['schema']))}"
                f"</code></td><td><code>{e(p['example'])}</code></td>"
                f"<td>{e(p['description'])}</td></tr>"
                for p in op["parameters"]
            ]
            out.append("</table>")
        if "requestBody" in op:
            body = op["requestBody"]
            out += [f"<h3>Request body</h3><p>{e(body['description'])}</p>"]
            out += _render_content(body["content"])
        out.append("<h3>Responses</h3>")
        for status, response in op["responses"].items():
            out.append(f"<h4>{e(status)}: {e(response['description'])}</h4>")
            out += _render_content(response["content"])
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out)


def _render_content(content: Mapping[str, Any]) -> list[str]:
    return [
        f"<p><code>{html.escape(media)}</code>, for example:</p>"
        f"<pre>{html.escape(_show(body['example'], indent=2))}</pre>"
        f"<details><summary>schema</summary><pre>{html.escape(_show(body['schema'], 2))}"
        "</pre></details>"
        for media, body in content.items()
    ]


def _show(value: Any, indent: int | None = None) -> str:
    return value if isinstance(value, str) else json.dumps(value, indent=indent)
