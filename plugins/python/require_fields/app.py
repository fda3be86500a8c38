"""`require_fields`: a sparkwasm middleware written in Python (componentize-py).

Checks that each successful answer is a JSON object carrying the configured fields; an answer
without them fails its row (kind `rejected`), so that the next run retries it. Records
`checked_by: python` in the response metadata.

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
from wit_world.imports import chain, host
from wit_world.imports.types import Error, ErrorKind, Request, Response

FIELDS: list[str] = []


class Handler(exports.Handler):
    def init(self) -> None:
        global FIELDS
        try:
            config = json.loads(host.config())
        except ValueError as e:
            raise Err(f"bad config: {e}")
        fields = config.get("fields")
        if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
            raise Err("bad config: `fields` must be a list of field names")
        FIELDS = fields

    def handle(self, request: Request) -> Response:
        response = chain.next(request)
        if 200 <= response.status < 300:
            try:
                document = json.loads(response.body)
            except ValueError:
                raise Err(Error(ErrorKind.REJECTED, "answer is not JSON"))
            if not isinstance(document, dict):
                raise Err(Error(ErrorKind.REJECTED, "answer is not a JSON object"))
            missing = [f for f in FIELDS if f not in document]
            if missing:
                raise Err(Error(ErrorKind.REJECTED, f"answer lacks {', '.join(missing)}"))
        response.metadata.append(("checked_by", "python"))
        return response
