"""One CLI invocation: its connection, how it prints, and how a failed call ends it."""

from __future__ import annotations

import shutil
import sys
import textwrap
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import grpc
import typer
from google.protobuf import json_format
from google.protobuf.message import Message
from rich.console import Console, RenderableType

from pointsbridge_cli.connection import CallFailed, Connection
from pointsbridge_cli.failures import exit_code, report_lines

_Request = TypeVar("_Request", bound=Message)
_Response = TypeVar("_Response", bound=Message)

# Piped output is read by scripts and grep, so an id must never wrap across lines.
_PIPED_WIDTH = 240


def _stdout_console() -> Console:
    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = max(console.width, _PIPED_WIDTH)
    return console


def to_json(message: Message) -> str:
    # Zero balances and empty lists are printed too, so `jq .account.balance` never gets null.
    return json_format.MessageToJson(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


@dataclass
class Session:
    """What the global options set up, shared by every command of one invocation."""

    connection: Connection
    json: bool = False
    # A request id this invocation made up: told once the call that carries it is answered.
    fresh_request_id: str = ""

    @classmethod
    def of(cls, ctx: typer.Context, json: bool) -> Session:
        """The invocation's session; a command's own --json adds to the global one."""
        session = ctx.find_object(Session)
        if session is None:
            raise AssertionError("the root callback sets up the session")
        session.json = session.json or json
        return session

    def call(
        self, method: grpc.UnaryUnaryMultiCallable[_Request, _Response], request: _Request
    ) -> _Response:
        """Call; a failure is told on stderr and ends the command with its exit code."""
        carries_fresh_id = bool(self.fresh_request_id) and (
            getattr(request, "request_id", None) == self.fresh_request_id
        )
        try:
            response = self.connection.call(method, request)
        except CallFailed as failure:
            # No word of the id after a refusal: repeating it can only repeat the refusal,
            # and where the outcome is unknown the failure's sentence names the id itself.
            fail(failure)
        except KeyboardInterrupt:
            if carries_fresh_id:
                tell(
                    "Interrupted before the answer came: the outcome is unknown; run the same "
                    f"command with --request-id {self.fresh_request_id} to learn it without "
                    "repeating the change."
                )
            raise typer.Exit(130) from None
        if carries_fresh_id:
            tell(
                f"Request id: {self.fresh_request_id} (rerun with --request-id "
                f"{self.fresh_request_id} to get this same outcome, changing nothing more)"
            )
        return response

    def request_id(self, given: str | None) -> str:
        """The given idempotency key, or a fresh one, printed once its call is answered."""
        if given is not None:
            return given
        self.fresh_request_id = str(uuid.uuid4())
        return self.fresh_request_id

    def listing(
        self,
        fetch: Callable[[str], _Response],
        first_token: str,
        *,
        every_page: bool,
        items_field: str,
    ) -> _Response:
        """The page at first_token, or with every_page all pages from there merged into one."""
        merged = fetch(first_token)
        if not every_page:
            return merged
        seen = {first_token}
        token: str = getattr(merged, "next_page_token", "")
        while token and token not in seen:
            seen.add(token)
            page = fetch(token)
            items: Any = getattr(merged, items_field)
            items.extend(getattr(page, items_field))
            token = getattr(page, "next_page_token", "")
        merged.ClearField("next_page_token")
        return merged

    def emit(self, response: _Response, render: Callable[[_Response], RenderableType]) -> None:
        """Print the response: protobuf JSON with --json, otherwise as rendered for people."""
        if self.json:
            print(to_json(response))
        else:
            _stdout_console().print(render(response))


def tell(line: str) -> None:
    """A line for the operator on stderr; on a terminal, wrapped between words."""
    if sys.stderr.isatty():
        indent = line[: len(line) - len(line.lstrip())]
        width = shutil.get_terminal_size().columns
        line = textwrap.fill(line, width, subsequent_indent=indent + "  ", break_on_hyphens=False)
    print(line, file=sys.stderr)


def fail(failure: CallFailed) -> NoReturn:
    for line in report_lines(failure):
        tell(line)
    raise typer.Exit(int(exit_code(failure.error.code)))
