"""The resumable samples file of one pass: one JSON record per completion, appended problem by
problem (flushed and synced), with the settings it was made with kept beside it, so an interrupted
evaluation resumes where it stopped and never mixes samples made with other settings."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gtpo.jsonl import read_jsonl, write_jsonl


class SamplesFile:
    """samples_<name>.jsonl and its samples_<name>.settings.json."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.settings_path = path.with_name(path.name.removesuffix(".jsonl") + ".settings.json")

    def check_settings(self, settings: dict[str, Any]) -> None:
        """Record the settings beside the samples; refuse to add to samples made with others."""
        if self.settings_path.exists() and self.path.exists():
            stored = json.loads(self.settings_path.read_text())
            changed = [key for key in settings if stored.get(key) != settings[key]]
            if changed:
                key = changed[0]
                raise ValueError(
                    f"{self.path}: its samples were made with {key} {stored.get(key)!r}, this run asks "
                    f"for {settings[key]!r}; use another --output_dir, or the same settings to resume"
                )
        self.settings_path.write_text(json.dumps(settings))

    def finished(self, num_samples: int) -> dict[str, list[dict[str, Any]]]:
        """Records of the problems whose samples are all on disk, by problem id; the file is rewritten
        without the others (and without a line cut by an interruption)."""
        if not self.path.exists():
            return {}
        by_problem: dict[str, list[dict[str, Any]]] = {}
        for record in read_jsonl(self.path):
            by_problem.setdefault(record["id"], []).append(record)
        finished = {k: v for k, v in by_problem.items() if len(v) == num_samples}
        write_jsonl(self.path, (r for records in finished.values() for r in records))
        return finished

    @contextmanager
    def appender(self) -> Iterator[Callable[[list[dict[str, Any]]], None]]:
        """A function that appends one problem's records and syncs them to disk."""
        with self.path.open("a", encoding="utf-8") as file:

            def append(records: list[dict[str, Any]]) -> None:
                file.write("".join(json.dumps(r) + "\n" for r in records))
                file.flush()
                os.fsync(file.fileno())

            yield append
