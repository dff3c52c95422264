"""JSON responses rendered with orjson through the one codec (db.codec), so a Secret that
slipped into a response body renders redacted. FastAPI deprecated its ORJSONResponse."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from sealflow.db.codec import dumps_bytes


class JSONBytes(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps_bytes(content)
