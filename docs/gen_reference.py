"""The reference pages, generated from the code at every ``mkdocs build`` (mkdocs-gen-files),
so they cannot drift from it: settings (the ``Settings`` class and how ``from_env`` reads
each field), metrics (the edge's and the worker's registries), topics (the AsyncAPI document
and the derived messages' JSON Schemas) and commands (the argument parser)."""

from __future__ import annotations

import argparse
import ast
import inspect
from collections.abc import Iterator
from dataclasses import MISSING, fields
from pathlib import Path

import mkdocs_gen_files
import orjson
import yaml

from streamproc import settings as settings_module
from streamproc.cli import build_parser
from streamproc.core.schemas import schema_dir
from streamproc.edge.metrics import EdgeMetrics
from streamproc.settings import PREFIX, Settings
from streamproc.worker.metrics import WorkerCollector, WorkerMetrics


def _cell(text: str) -> str:
    """One table cell: reST literals as Markdown, on one line, pipes and tags escaped."""
    text = " ".join(text.replace("``", "`").split()).replace("|", "\\|")
    spans = text.split("`")  # odd ones are code, shown as written
    for index in range(0, len(spans), 2):
        spans[index] = spans[index].replace("<", "&lt;").replace(">", "&gt;")
    return "`".join(spans)


def _field_docs() -> dict[str, str]:
    """Attribute docstrings of ``Settings`` (the string right after each field)."""
    tree = ast.parse(inspect.getsource(Settings))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, after in zip(body, [*body[1:], None], strict=True):
        if isinstance(node, ast.AnnAssign) and isinstance(after, ast.Expr):
            docs[node.target.id] = after.value.value  # type: ignore[attr-defined,union-attr]
    return docs


def _reads() -> dict[str, tuple[str, str, str]]:
    """field -> (variable, kind, accepted values), from the reader calls in ``from_env``."""
    tree = ast.parse(inspect.getsource(settings_module))
    found = {}
    for call in ast.walk(tree):
        if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
            continue
        if call.func.id != "cls":
            continue
        for keyword in call.keywords:
            reader = next(
                (
                    node
                    for node in ast.walk(keyword.value)
                    if isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "reader"
                ),
                None,
            )
            if reader is None:
                continue
            variable = PREFIX + reader.args[0].value  # type: ignore[attr-defined]
            options = {k.arg: ast.unparse(k.value) for k in reader.keywords}
            kind = reader.func.attr  # type: ignore[attr-defined]
            accepted = ""
            if "low" in options or "high" in options:
                accepted = f"{options.get('low', '')} to {options.get('high', 'any')}"
            if kind == "choice":
                choices = getattr(settings_module, ast.unparse(reader.args[2]), None)
                accepted = ", ".join(f"`{c}`" for c in choices or ())
            found[keyword.arg] = (variable, kind, accepted)
    return found


def _default(value: object) -> str:
    if value in (None, ()):
        return "unset"
    if isinstance(value, bool):
        return "`1`" if value else "`0`"
    return f"`{value}`"


def settings_page() -> str:
    docs, reads = _field_docs(), _reads()
    rows = [
        "# Settings",
        "",
        "All from environment variables, read and checked when a command starts: a bad value",
        "stops it with one line naming the variable (exit code 2). Generated from",
        "`streamproc/settings.py`.",
        "",
        "| variable | default | accepted | meaning |",
        "| --- | --- | --- | --- |",
    ]
    for field in fields(Settings):
        variable, kind, accepted = reads[field.name]
        default = field.default if field.default is not MISSING else None
        rows.append(
            f"| `{variable}` | {_default(default)} | {accepted or kind} "
            f"| {_cell(docs.get(field.name, ''))} |"
        )
    return "\n".join(rows) + "\n"


def _metric_rows(metrics: Iterator) -> Iterator[str]:
    for metric in metrics:
        labels = sorted(
            {
                name
                for sample in metric.samples
                if not sample.name.endswith(("_created", "_bucket"))
                for name in sample.labels
            }
        )
        shown = metric.name + ("_total" if metric.type == "counter" else "")
        label_text = ", ".join(f"`{label}`" for label in labels) or "none"
        yield f"| `{shown}` | {metric.type} | {label_text} | {_cell(metric.documentation)} |"


def metrics_page() -> str:
    edge = EdgeMetrics()
    edge.requests.labels(provider="daily", outcome="published").inc(0)
    worker = WorkerMetrics(
        WorkerCollector({"folded": 0}, records_swept=lambda: 0, consumer_lag=lambda: {("t", 0): 0})
    )
    header = ["| metric | type | labels | meaning |", "| --- | --- | --- | --- |"]
    return "\n".join(
        [
            "# Metrics",
            "",
            "Prometheus text at `/metrics`: the edge's on its port, each worker's on its web port",
            "(`STREAMPROC_WORKER_WEB_PORT`). Generated from `streamproc/edge/metrics.py` and",
            "`streamproc/worker/metrics.py`. Alert rules and a dashboard that use them are in",
            "`deploy/prometheus/` and `deploy/grafana/` ([Operating it](../operating.md)).",
            "",
            "## Edge",
            "",
            *header,
            *_metric_rows(edge.registry.collect()),
            "",
            "## Worker",
            "",
            *header,
            *_metric_rows(worker.registry.collect()),
            "",
        ]
    )


def _properties(schema: dict) -> Iterator[str]:
    required = set(schema.get("required", ()))
    for name, spec in schema.get("properties", {}).items():
        kind = spec.get("type", spec.get("$ref", "").rsplit("/", 1)[-1] or "any")
        if "enum" in spec:
            kind = " \\| ".join(f"`{value}`" for value in spec["enum"])
        elif "const" in spec:
            kind = f"`{spec['const']}`"
        if isinstance(kind, list):
            kind = " or ".join(kind)
        yield f"| `{name}` | {kind} | {'yes' if name in required else ''} |"


def topics_page() -> str:
    folder = schema_dir()
    asyncapi = yaml.safe_load((folder / "asyncapi.yaml").read_text())
    rows = [
        "# Topics",
        "",
        _cell(asyncapi["info"]["description"]),
        "",
        "Generated from `schemas/asyncapi.yaml` (AsyncAPI "
        f"{asyncapi['asyncapi']}, document version {asyncapi['info']['version']}) and the JSON "
        "Schemas in `schemas/derived/`.",
        "",
        "| topic (default name) | what | messages |",
        "| --- | --- | --- |",
    ]
    for channel in asyncapi["channels"].values():
        messages = ", ".join(f"`{name}`" for name in channel.get("messages", {}))
        rows.append(f"| `{channel['address']}` | {_cell(channel['description'])} | {messages} |")
    for path in sorted((folder / "derived").glob("*.json")):
        schema = orjson.loads(path.read_bytes())
        if "properties" not in schema:
            continue  # shared definitions
        rows += [
            "",
            f"## {_cell(schema.get('title', path.stem))}",
            "",
            f"`schemas/derived/{path.name}`. {_cell(schema.get('description', ''))}",
            "",
            "| field | type | required |",
            "| --- | --- | --- |",
            *_properties(schema),
        ]
    return "\n".join(rows) + "\n"


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def commands_page() -> str:
    parser = build_parser()
    rows = [
        "# Commands",
        "",
        "Generated from `streamproc/cli.py` (`streamproc <command> --help` prints the same).",
        "",
        "```text",
        parser.format_help().rstrip(),
        "```",
    ]
    for name, sub in _subcommands(parser).items():
        rows += ["", f"## `streamproc {name}`", "", "```text", sub.format_help().rstrip(), "```"]
    return "\n".join(rows) + "\n"


PAGES = {
    "reference/settings.md": settings_page,
    "reference/metrics.md": metrics_page,
    "reference/topics.md": topics_page,
    "reference/commands.md": commands_page,
}

for page, render in PAGES.items():
    with mkdocs_gen_files.open(page, "w") as out:
        out.write(render())
    mkdocs_gen_files.set_edit_path(page, Path("docs/gen_reference.py"))
