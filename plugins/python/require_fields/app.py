"""`require_fields`: a sparkwasm middleware written in Python (componentize-py).

Checks that each successful answer is a JSON object carrying the configured fields; an answer
without them fails its row (kind `rejected`), so that the next run retries it. Records
`checked_by: python` in the response metadata. It asks only for `on-response`: the host does not
call it on the way in, nor on errors.

    middleware:
      - type: wasm
        name: require_fields
        path: require_fields.wasm       # built by scripts/build-python-plugin.sh
        sha256: "..."
        config: {fields: [id, status]}
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports import handler
from wit_world.imports import host
from wit_world.imports.types import Error, ErrorKind, Request, Response

FIELDS: list[str] = []


def reject(message: str) -> handler.OutcomeAction:
    return handler.OutcomeAction_Fail(Error(ErrorKind.REJECTED, message))


class Handler(exports.Handler):
    def init(self) -> handler.Hooks:
        global FIELDS
        try:
            config = json.loads(host.config())
        except ValueError as e:
            raise Err(f"bad config: {e}")
        fields = config.get("fields")
        if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
            raise Err("bad config: `fields` must be a list of field names")
        FIELDS = fields
        return handler.Hooks.ON_RESPONSE

    def on_request(self, request: Request) -> handler.RequestAction:
        return handler.RequestAction_Continue()

    def on_response(self, request: Request, response: Response) -> handler.OutcomeAction:
        if 200 <= response.status() < 300:
            try:
                document = json.loads(response.body())
            except ValueError:
                return reject("answer is not JSON")
            if not isinstance(document, dict):
                return reject("answer is not a JSON object")
            missing = [f for f in FIELDS if f not in document]
            if missing:
                return reject(f"answer lacks {', '.join(missing)}")
        response.set_metadata("checked_by", "python")
        return handler.OutcomeAction_Done()

    def on_error(self, request: Request, error: Error) -> handler.OutcomeAction:
        return handler.OutcomeAction_Fail(error)
