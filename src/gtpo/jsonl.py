"""JSON-lines files that survive a crash: a line cut by an interruption is skipped when the file is
read, and a file rewritten is replaced whole (written beside it, then renamed over it)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def read_jsonl(path: Path) -> list[Any]:
    """The records of a JSONL file, without a line cut by an interruption; [] when there is no file."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def write_jsonl(path: Path, records: Iterable[Any]) -> None:
    """Replace the file by these records in one rename: a crash leaves the old file or the new one."""
    partial = path.with_name(path.name + ".tmp")
    partial.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    os.replace(partial, path)
