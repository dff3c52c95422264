"""What every `sealflow` command module shares: the global options, the settings, one-line
failures, JSON output. Its own module, so `python -m sealflow.cli` (where cli is __main__)
and the command modules it registers see the same state."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, NoReturn

import typer

from sealflow.config import Settings, load_settings

_overrides: dict[str, Any] = {}


def _settings() -> Settings:
    from pydantic import ValidationError

    try:
        settings = load_settings(_overrides)
    except ValidationError as err:  # one line naming each setting at fault (not its value:
        problems = "; ".join(  # settings may hold credentials, e.g. in a database URL)
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()
        )
        _fail(f"invalid settings: {problems}")
    except Exception as err:  # a missing or unreadable config file
        _fail(f"invalid settings: {' '.join(str(err).split())}")
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as err:
        _fail(f"cannot use data directory {settings.data_dir}: {err.strerror}")
    return settings


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()  # as the API writes them
    return str(value)


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=_json_default))
