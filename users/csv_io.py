"""CSV in and out, shared by the import page, the export view and the commands.

Import: UTF-8 (a BOM is fine), a header row naming known columns, every problem
reported by line before anything is written. Export: streamed row by row, with
cells that a spreadsheet would run as a formula neutralised by a leading apostrophe
(the import strips that apostrophe again, so an export re-imports cleanly).
"""

from __future__ import annotations

import csv
import datetime
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from users.selectors import EXPORT_COLUMNS
from users.services import CREATE_FIELDS, RowError

# Columns an export writes that an import accepts and ignores (computed or set by the app).
IGNORED_ON_IMPORT = frozenset({"status", "created_at", "last_online_at", "id", "server"})
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass
class ParsedCsv:
    rows: list[dict[str, str]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)

    @property
    def fatal(self) -> bool:
        """A problem with the file as a whole (position 0): no row can be trusted."""
        return any(error.position == 0 for error in self.errors)


def _cells(binary: IO[bytes]) -> Iterator[list[str]]:
    text = io.TextIOWrapper(binary, encoding="utf-8-sig", errors="strict", newline="")
    try:
        yield from csv.reader(text)
    finally:
        text.detach()  # the upload belongs to the caller; do not close it


def parse_users_csv(binary: IO[bytes], *, max_rows: int, progress: Any = None) -> ParsedCsv:
    """Read every row; report wrong columns, bad encoding, formulas and length by line."""
    parsed = ParsedCsv()
    reader = _cells(binary)
    try:
        header = next(reader, None)
        if header is None:
            parsed.errors.append(RowError(0, "file", "is empty"))
            return parsed
        columns = [name.strip().lower() for name in header]
        unknown = sorted(set(columns) - set(CREATE_FIELDS) - IGNORED_ON_IMPORT - {""})
        if unknown or "username" not in columns or "protocol" not in columns:
            parsed.errors.append(
                RowError(
                    0,
                    "header",
                    f"must name the columns in line 1: username and protocol, optionally "
                    f"{', '.join(c for c in CREATE_FIELDS if c not in ('username', 'protocol'))}"
                    + (f" (unknown: {', '.join(unknown)})" if unknown else ""),
                )
            )
            return parsed
        if len(set(columns)) != len(columns):
            parsed.errors.append(RowError(0, "header", "names a column twice"))
            return parsed
        data_lines = 0
        for line_number, cells in enumerate(reader, start=2):
            if not any(cell.strip() for cell in cells):
                continue
            data_lines += 1
            if data_lines > max_rows:
                parsed.errors.append(RowError(0, "file", f"has more than {max_rows:,} rows; split it"))
                parsed.rows.clear()
                parsed.lines.clear()
                return parsed
            if len(cells) != len(columns):
                parsed.errors.append(
                    RowError(line_number, "columns", f"has {len(cells)} cells, expected {len(columns)}")
                )
                continue
            row: dict[str, str] = {}
            for name, cell in zip(columns, cells, strict=True):
                if name in IGNORED_ON_IMPORT or not name:
                    continue
                if cell.startswith("="):
                    parsed.errors.append(
                        RowError(line_number, name, "starts with '=' (a spreadsheet formula); remove it")
                    )
                if cell.startswith("'") and cell[1:2] and cell[1] in FORMULA_START:
                    cell = cell[1:]
                row[name] = cell
            parsed.rows.append(row)
            parsed.lines.append(line_number)
            if progress and len(parsed.rows) % 100_000 == 0:
                progress(f"read {len(parsed.rows):,} rows")
    except UnicodeDecodeError as exc:
        parsed.errors.append(RowError(0, "file", f"is not UTF-8 text (byte {exc.start}); save it as “CSV UTF-8”"))
        parsed.rows.clear()
        parsed.lines.clear()
    except csv.Error as exc:
        parsed.errors.append(RowError(0, "file", f"is not valid CSV ({exc})"))
        parsed.rows.clear()
        parsed.lines.clear()
    if not parsed.errors and not parsed.rows:
        parsed.errors.append(RowError(0, "file", "has a header but no rows"))
    return parsed


def escape_cell(value: Any) -> str:
    """A cell a spreadsheet shows as text, never runs as a formula."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    text = str(value)
    if text.startswith(FORMULA_START):
        return "'" + text
    return text


class _Echo:
    def write(self, value: str) -> str:
        return value


def csv_lines(rows: Iterable[tuple[Any, ...]], *, header: tuple[str, ...] = EXPORT_COLUMNS) -> Iterator[str]:
    """The export as lines of CSV text, produced as the rows stream in."""
    writer = csv.writer(_Echo())
    yield writer.writerow(header)
    for row in rows:
        yield writer.writerow([escape_cell(value) for value in row])
