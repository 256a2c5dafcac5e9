"""`pointsbridge accounts ...` against a live card-points server: output, errors, exit codes."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time

from tests.auth import Callers
from tests.cli.conftest import Cli, flat
from tests.support import free_port

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}")


async def test_open_credit_show_and_page_through_transactions(cli: Cli) -> None:
    # The global --json works as well as each command's own.
    opened = json.loads(
        await cli.ok("--json", "accounts", "open", "alice-card", "--holder", "Alice [Liu]")
    )
    assert opened["account"]["account_id"] == "alice-card"
    assert opened["account"]["state"] == "ACCOUNT_STATE_ACTIVE"
    # A zero is printed too, so scripts never read a missing balance.
    assert opened["account"]["balance"] == "0"

    credited = await cli.ok(
        "accounts", "credit", "alice-card", "5000", "--reason", "welcome", "--request-id", "w-1"
    )
    assert "Credited 5000 points to alice-card (request id w-1); balance now 5000." in credited

    shown = await cli.ok("accounts", "show", "alice-card")
    assert re.search(r"Balance\s+5000 points", shown), shown
    assert re.search(r"State\s+ACTIVE", shown), shown
    # Brackets in server data are printed as they are, never read as rich markup.
    assert "Alice [Liu]" in shown

    await cli.ok("accounts", "credit", "alice-card", "250", "--request-id", "w-2")
    first_page = await cli.ok("accounts", "transactions", "alice-card", "--page-size", "1")
    assert re.search(r"CREDIT\s+\+250\s+5250\s+w-2", first_page), first_page
    assert "w-1" not in first_page
    token = re.search(r"More: rerun with --page-token (\S+)", first_page)
    assert token is not None, first_page
    second_page = await cli.ok(
        "accounts", "transactions", "alice-card", "--page-size", "1", "--page-token", token[1]
    )
    assert re.search(r"CREDIT\s+\+5000\s+5000\s+w-1\s+-\s+welcome", second_page), second_page

    ledger = await cli.json("accounts", "transactions", "alice-card", "--page-size", "1", "--all")
    assert [(e["type"], int(e["amount"]), e["request_id"]) for e in ledger["transactions"]] == [
        ("ENTRY_TYPE_CREDIT", 250, "w-2"),
        ("ENTRY_TYPE_CREDIT", 5000, "w-1"),
    ]
    assert ledger["next_page_token"] == ""


async def test_operators_list_accounts_paged_and_by_state(cli: Cli) -> None:
    for name in ("carol-card", "alice-card", "bob-card"):
        await cli.ok("accounts", "open", name, "--holder", name.split("-")[0].title())
    await cli.ok("accounts", "credit", "bob-card", "700", "--request-id", "b-1")
    await cli.ok("accounts", "freeze", "carol-card")

    listed = await cli.ok("accounts", "list")
    assert re.search(r"alice-card\s+Alice\s+ACTIVE\s+0\s", listed), listed
    assert re.search(r"bob-card\s+Bob\s+ACTIVE\s+700\s", listed), listed
    assert re.search(r"carol-card\s+Carol\s+FROZEN\s+0\s", listed), listed
    assert listed.index("alice-card") < listed.index("bob-card") < listed.index("carol-card")

    frozen = await cli.json("accounts", "list", "--state", "frozen")
    assert [a["account_id"] for a in frozen["accounts"]] == ["carol-card"]
    first = await cli.ok("accounts", "list", "--page-size", "2")
    token = re.search(r"More: rerun with --page-token (\S+)", first)
    assert token is not None and "carol-card" not in first, first
    rest = await cli.json("accounts", "list", "--page-size", "2", "--page-token", token[1])
    assert [a["account_id"] for a in rest["accounts"]] == ["carol-card"]
    every = await cli.json("accounts", "list", "--page-size", "1", "--all")
    assert [a["account_id"] for a in every["accounts"]] == ["alice-card", "bob-card", "carol-card"]


async def test_credentials_refusals_say_what_is_wrong(cli: Cli, auth: Callers) -> None:
    await cli.ok("accounts", "open", "dan-card", "--holder", "Dan")
    expired = auth.token("ops-1", "admin", ttl=60, now=time.time() - 3600)
    refused = await cli("accounts", "show", "dan-card", env={"POINTSBRIDGE_TOKEN": expired})
    assert refused.returncode == 8
    assert re.fullmatch(
        r"The token expired at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ, so the cardpoints service "
        r"refused it; get a new one \(e\.g\. `pointsbridge token --admin ops-1`\) and pass it "
        r"in POINTSBRIDGE_TOKEN\.",
        refused.stderr.strip(),
    ), refused.stderr
    customer = auth.token("dan", "customer")
    denied = await cli("accounts", "show", "dan-card", env={"POINTSBRIDGE_TOKEN": customer})
    assert denied.returncode == 8
    assert denied.stderr.strip() == (
        "Only a PointsBridge service or an operator (a token with the admin role) may make "
        "this call to the cardpoints service, and these credentials are neither."
    )


async def test_the_address_comes_from_the_environment(cli: Cli) -> None:
    result = await cli(
        "accounts",
        "open",
        "env-card",
        "--holder",
        "Env",
        "--json",
        env={"POINTSBRIDGE_CLI_CARDPOINTS": cli.cardpoints},
        addresses=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["account"]["account_id"] == "env-card"


async def test_a_generated_request_id_is_printed_and_a_retry_with_it_changes_nothing(
    cli: Cli,
) -> None:
    await cli.ok("accounts", "open", "bob-card", "--holder", "Bob")
    first = await cli("accounts", "credit", "bob-card", "700", "--json")
    assert first.returncode == 0, first.stderr
    match = UUID.search(first.stderr)
    assert match is not None, first.stderr
    request_id = match.group(0)
    assert f"--request-id {request_id}" in first.stderr
    entry = json.loads(first.stdout)["entry"]
    assert entry["request_id"] == request_id

    retried = await cli.json("accounts", "credit", "bob-card", "700", "--request-id", request_id)
    assert retried["entry"]["entry_id"] == entry["entry_id"]
    assert retried["account"]["balance"] == "700"


async def test_freeze_unfreeze_and_close(cli: Cli) -> None:
    await cli.ok("accounts", "open", "carol-card", "--holder", "Carol")
    frozen = await cli.json("accounts", "freeze", "carol-card", "--reason", "reported stolen")
    assert frozen["account"]["state"] == "ACCOUNT_STATE_FROZEN"
    active = await cli.ok("accounts", "unfreeze", "carol-card")
    assert "ACTIVE" in active

    # Closing is final, so it is refused as a usage error without --yes off a terminal.
    unconfirmed = await cli("accounts", "close", "carol-card")
    assert unconfirmed.returncode == 2
    assert "closing an account is final; pass --yes to confirm" in flat(unconfirmed.stderr)

    closed = await cli.json("accounts", "close", "carol-card", "--yes", "--reason", "left")
    assert closed["account"]["state"] == "ACCOUNT_STATE_CLOSED"

    refused = await cli("accounts", "credit", "carol-card", "10", "--request-id", "late-1")
    assert refused.returncode == 5
    assert refused.stderr.strip() == "Card account 'carol-card' is closed, and closing is final."
    assert refused.stdout == ""


async def test_unknown_account_exits_4_naming_it(cli: Cli) -> None:
    result = await cli("accounts", "show", "nobody-card")
    assert result.returncode == 4
    assert result.stderr.strip() == "Card account 'nobody-card' does not exist."
    assert result.stdout == ""


async def test_reused_request_id_exits_6(cli: Cli) -> None:
    await cli.ok("accounts", "open", "dan-card", "--holder", "Dan")
    await cli.ok("accounts", "credit", "dan-card", "100", "--request-id", "dan-1")
    result = await cli("accounts", "credit", "dan-card", "200", "--request-id", "dan-1")
    assert result.returncode == 6
    assert result.stderr.startswith(
        "Request id 'dan-1' was already used with different parameters;"
    )


async def _overflowing_credit(cli: Cli) -> subprocess.CompletedProcess[str]:
    await cli.ok("accounts", "open", "erin-card", "--holder", "Erin")
    await cli.ok("accounts", "credit", "erin-card", "10", "--request-id", "erin-1")
    return await cli("accounts", "credit", "erin-card", str(2**63 - 1), "--request-id", "e-2")


async def test_refused_fields_exit_3_and_are_listed(cli: Cli) -> None:
    overflow, bad_id = await asyncio.gather(
        _overflowing_credit(cli), cli("accounts", "open", "no spaces!", "--holder", "")
    )
    assert overflow.returncode == 3
    lines = overflow.stderr.splitlines()
    assert lines[0] == (
        "The cardpoints service refused the request because some of its fields are invalid."
    )
    assert lines[1].startswith("  - points: ")
    assert "does not fit in int64" in lines[1]

    assert bad_id.returncode == 3
    listed = {line.split(":")[0] for line in bad_id.stderr.splitlines()[1:]}
    assert listed == {"  - account_id", "  - holder_name"}


async def test_points_that_are_not_positive_whole_numbers_are_usage_errors(cli: Cli) -> None:
    # A negative number is a bad number of points, with or without `--` before it.
    refused = ["1.5", "0", str(2**63), "-5"]
    results = await asyncio.gather(
        *(
            cli("accounts", "credit", "--request-id", f"fay-{n}", "fay-card", "--", points)
            for n, points in enumerate(refused)
        ),
        cli("accounts", "credit", "fay-card", "-5"),
    )
    for result in results:
        assert result.returncode == 2, result
        assert "must be a whole number from 1 to 9223372036854775807" in flat(result.stderr)
        assert "No such option" not in result.stderr


async def test_unreachable_cardpoints_exits_7_naming_the_address(auth: Callers) -> None:
    address = f"127.0.0.1:{free_port()}"
    result = await Cli(address, address, auth.superuser)("accounts", "show", "alice-card")
    assert result.returncode == 7
    assert result.stderr.startswith(f"Cannot reach the cardpoints service at {address};")
    assert "--cardpoints" in result.stderr


async def test_a_call_without_answer_exits_7_and_says_to_retry_with_the_request_id(
    silent_port: int, auth: Callers
) -> None:
    address = f"127.0.0.1:{silent_port}"
    result = await Cli(address, address, auth.superuser)(
        "--timeout", "0.3", "accounts", "credit", "alice-card", "5", "--request-id", "slow-1"
    )
    assert result.returncode == 7
    assert result.stderr.startswith(
        f"The cardpoints service at {address} did not answer within 0.3 seconds;"
    )
    assert "retry with --request-id slow-1" in result.stderr
