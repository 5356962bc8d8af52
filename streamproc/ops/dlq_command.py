"""``streamproc dlq list|show|redrive``: the command's options and what it prints
(``ops/dlq.py`` does the work)."""

from __future__ import annotations

import argparse
import asyncio
import base64
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka.errors import KafkaError

from streamproc.ops.dlq import (
    DeadLetter,
    RedriveReport,
    Selection,
    find,
    read_dead_letters,
    redrive,
    redriven_ids,
    summarize,
)
from streamproc.settings import Settings

STAGES = ("decode", "join", "fold", "fetch")


def add_parser(commands: Any, timestamp: Callable[[str], datetime], run: Callable) -> None:
    """``dlq`` and its three commands, each with ``--json``."""
    dlq = commands.add_parser("dlq", help="list, inspect and resend dead letters")
    actions = dlq.add_subparsers(dest="dlq_command", required=True)

    def selecting(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--since", type=timestamp, metavar="TIME", help="dead-lettered after")
        parser.add_argument("--stage", choices=STAGES)
        parser.add_argument("--reason", metavar="TEXT", help="reason contains (any case)")
        parser.add_argument("--json", action="store_true", help="JSON (for scripts)")

    listing = actions.add_parser("list", help="counts by stage and reason, newest examples")
    selecting(listing)
    show = actions.add_parser("show", help="one dead letter whole")
    show.add_argument("ref", metavar="REF", help="its event id, or partition:offset")
    show.add_argument("--json", action="store_true", help="the dead letter as stored")
    resend = actions.add_parser("redrive", help="send dead letters back where they failed")
    resend.add_argument("refs", nargs="*", metavar="REF", help="event ids or partition:offset")
    selecting(resend)
    resend.add_argument("--all", action="store_true", help="every dead letter (no selection)")
    resend.add_argument("--dry-run", action="store_true", help="say what would be sent")
    for parser in (listing, show, resend):
        parser.set_defaults(run=run)


def run(settings: Settings, args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_run(settings, args))
    except (KafkaError, OSError, ValueError) as exc:
        print(f"streamproc: dlq {args.dlq_command} failed: {exc}", file=sys.stderr)
        return 1


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    letters = await read_dead_letters(settings, progress=not getattr(args, "json", False))
    if args.dlq_command == "show":
        return await _show(settings, letters, args.ref, as_json=args.json)
    selection = Selection(
        since=args.since,
        stage=args.stage,
        reason=args.reason,
        refs=tuple(getattr(args, "refs", ())),
    )
    selected = [letter for letter in letters if selection.matches(letter)]
    if args.dlq_command == "list":
        _list(settings, letters, selected, as_json=args.json)
        return 0
    if not selection.narrows and not args.all:
        print(
            "streamproc: say which dead letters to redrive (REF, --since, --stage, --reason),"
            " or --all",
            file=sys.stderr,
        )
        return 2
    missing = [ref for ref in selection.refs if find(letters, ref) is None]
    if missing:
        print(f"streamproc: no dead letter {', '.join(missing)}", file=sys.stderr)
        return 1
    report = await redrive(settings, selected, dry_run=args.dry_run)
    _print_redrive(report, dry_run=args.dry_run, as_json=args.json)
    return 1 if report.unreadable else 0


def _list(
    settings: Settings, letters: list[DeadLetter], selected: list[DeadLetter], *, as_json: bool
) -> None:
    rows = summarize(selected)
    if as_json:
        print(
            orjson.dumps(
                {"total": len(letters), "selected": len(selected), "groups": rows}
            ).decode()
        )
        return
    print(f"{len(letters)} dead letter(s) in {settings.dlq_topic}; {len(selected)} selected")
    if rows:
        print(f"  {'count':>6}  {'stage':<7} {'newest':<20}  reason (newest examples)")
    for row in rows:
        print(
            f"  {row['count']:>6}  {row['stage']:<7} {_when(row['newest_at']):<20}  "
            f"{_short(row['reason'])} ({', '.join(row['examples'])})"
        )


async def _show(settings: Settings, letters: list[DeadLetter], ref: str, *, as_json: bool) -> int:
    letter = find(letters, ref)
    if letter is None:
        print(f"streamproc: no dead letter {ref} in {settings.dlq_topic}", file=sys.stderr)
        return 1
    redriven = (await redriven_ids(settings)).get(letter.event_id)
    if as_json:
        print(orjson.dumps(letter.message | {"redriven": redriven}).decode())
        return 0
    message = letter.message
    source = message.get("source") or {}
    print(f"dead letter {letter.event_id} at {settings.dlq_topic} {letter.ref}")
    print(f"  stage:     {letter.stage} (attempt {letter.attempt})")
    print(f"  reason:    {letter.reason}")
    print(f"  when:      {_when(letter.at)}")
    print(f"  recording: {message.get('recording_id') or '-'}")
    print(
        f"  from:      {source.get('topic')} partition {source.get('partition')} "
        f"offset {source.get('offset')}"
    )
    print(f"  key:       {_bytes(message.get('key_base64'))}")
    for name, value in letter.headers().items():
        print(f"  header:    {name} = {_text(value)}")
    size = message.get("value_size")
    if message.get("value_base64") is None and size is not None:
        print(f"  value:     {size} bytes, not in the dead letter: read it at 'from'")
    else:
        print(f"  value:     {_bytes(message.get('value_base64'))}")
    if redriven is None:
        print("  redriven:  no")
    else:
        print(
            f"  redriven:  {_when(redriven['redriven_at'])} to {redriven['topic']} "
            f"partition {redriven['partition']} offset {redriven['offset']}"
        )
    return 0


def _print_redrive(report: RedriveReport, *, dry_run: bool, as_json: bool) -> None:
    if as_json:
        document = {
            "dry_run": dry_run,
            "sent": [
                {
                    "dead_letter": r.letter.event_id,
                    "ref": r.letter.ref,
                    "topic": r.topic,
                    "partition": r.partition,
                    "offset": r.offset,
                    "attempt": r.letter.attempt + 1,
                }
                for r in report.resent
            ],
            "already_redriven": [letter.event_id for letter in report.already],
            "unreadable": [
                {"dead_letter": letter.event_id, "why": why} for letter, why in report.unreadable
            ],
        }
        print(orjson.dumps(document).decode())
        return
    verb = "would send" if dry_run else "sent"
    for resent in report.resent:
        where = (
            "" if resent.offset is None else f" partition {resent.partition} offset {resent.offset}"
        )
        print(
            f"{verb} {resent.letter.ref} ({resent.letter.stage}, attempt "
            f"{resent.letter.attempt + 1}) to {resent.topic}{where}"
        )
    for letter, why in report.unreadable:
        print(f"could not send {letter.ref}: {why}")
    print(
        f"{verb} {len(report.resent)}; {len(report.already)} already redriven (not sent again)"
        + (f"; {len(report.unreadable)} could not be read" if report.unreadable else "")
    )


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if at else "-"


def _short(text: str, width: int = 90) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _bytes(encoded: str | None) -> str:
    return "null" if encoded is None else _text(base64.b64decode(encoded))


def _text(value: bytes) -> str:
    """UTF-8 text as it is (shortened), anything else as base64."""
    try:
        return _short(value.decode(), 300)
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(value).decode()
