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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from users.schema import EXPORT_COLUMNS, IGNORED_ON_IMPORT, IMPORT_COLUMNS, REQUIRED_IMPORT_COLUMNS
from users.selectors import servers_by_name
from users.services import RowError

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass
class ParsedCsv:
    rows: list[dict[str, Any]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)

    @property
    def fatal(self) -> bool:
        """A problem with the file as a whole (position 0): no row can be trusted."""
        return any(error.position == 0 for error in self.errors)

    def refuse(self, message: str, name: str = "file") -> None:
        self.errors.append(RowError(0, name, message))
        self.rows.clear()
        self.lines.clear()


def _cells(binary: IO[bytes]) -> Iterator[list[str]]:
    text = io.TextIOWrapper(binary, encoding="utf-8-sig", errors="strict", newline="")
    try:
        yield from csv.reader(text)
    finally:
        text.detach()  # the upload belongs to the caller; do not close it


def parse_users_csv(binary: IO[bytes], *, max_rows: int, progress: Callable[[str], object] | None = None) -> ParsedCsv:
    """Read every row; report wrong columns, bad encoding, formulas, length and servers by line.

    Three steps: the header, the rows (cells to values), then the `server` column (a
    server's name, or host/name where names repeat) turned into the server's id.
    """
    parsed = ParsedCsv()
    reader = _cells(binary)
    try:
        columns = _read_header(next(reader, None), parsed)
        if columns is not None:
            _read_rows(reader, columns, parsed, max_rows=max_rows, progress=progress)
    except UnicodeDecodeError as exc:
        parsed.refuse(f"is not UTF-8 text (byte {exc.start}); save it as “CSV UTF-8”")
    except csv.Error as exc:
        parsed.refuse(f"is not valid CSV ({exc})")
    if not parsed.errors and not parsed.rows:
        parsed.errors.append(RowError(0, "file", "has a header but no rows"))
    if not parsed.fatal:
        _resolve_servers(parsed)
    return parsed


def _read_header(header: list[str] | None, parsed: ParsedCsv) -> list[str] | None:
    """The column names of line 1, or None (and a file error) when they cannot be used."""
    if header is None:
        parsed.refuse("is empty")
        return None
    columns = [name.strip().lower() for name in header]
    unknown = sorted(set(columns) - set(IMPORT_COLUMNS) - IGNORED_ON_IMPORT - {""})
    if unknown or not set(REQUIRED_IMPORT_COLUMNS) <= set(columns):
        optional = ", ".join(c for c in IMPORT_COLUMNS if c not in REQUIRED_IMPORT_COLUMNS)
        parsed.refuse(
            f"must name the columns in line 1: {' and '.join(REQUIRED_IMPORT_COLUMNS)}, optionally {optional}"
            + (f" (unknown: {', '.join(unknown)})" if unknown else ""),
            "header",
        )
        return None
    if len(set(columns)) != len(columns):
        parsed.refuse("names a column twice", "header")
        return None
    return columns


def _read_rows(
    reader: Iterator[list[str]],
    columns: list[str],
    parsed: ParsedCsv,
    *,
    max_rows: int,
    progress: Callable[[str], object] | None,
) -> None:
    data_lines = 0
    for line_number, cells in enumerate(reader, start=2):
        if not any(cell.strip() for cell in cells):
            continue
        data_lines += 1
        if data_lines > max_rows:
            parsed.refuse(f"has more than {max_rows:,} rows; split it")
            return
        if len(cells) != len(columns):
            parsed.errors.append(RowError(line_number, "columns", f"has {len(cells)} cells, expected {len(columns)}"))
            continue
        row: dict[str, Any] = {}
        for name, cell in zip(columns, cells, strict=True):
            if name in IGNORED_ON_IMPORT or not name:
                continue
            if cell.startswith("="):
                parsed.errors.append(RowError(line_number, name, "starts with '=' (a spreadsheet formula); remove it"))
            if cell.startswith("'") and cell[1:2] and cell[1] in FORMULA_START:
                cell = cell[1:]
            row[name] = cell
        parsed.rows.append(row)
        parsed.lines.append(line_number)
        if progress and len(parsed.rows) % 100_000 == 0:
            progress(f"read {len(parsed.rows):,} rows")


def _resolve_servers(parsed: ParsedCsv) -> None:
    """`server` (a name) becomes `server_id`; a row naming no known server is reported and left out.

    The protocol check (a server serves one protocol) is the services' own, as for
    every other way of assigning a server.
    """
    named = [row for row in parsed.rows if str(row.get("server", "")).strip()]
    servers = servers_by_name() if named else {}
    kept_rows: list[dict[str, Any]] = []
    kept_lines: list[int] = []
    for line, row in zip(parsed.lines, parsed.rows, strict=True):
        name = str(row.pop("server", "")).strip()
        if name:
            matches = servers.get(name, [])
            if len(matches) != 1:
                why = "is not a server here" if not matches else f"names {len(matches)} servers; write host/name"
                parsed.errors.append(RowError(line, "server", f"{name!r} {why}"))
                continue
            row["server_id"] = matches[0][0]
        kept_rows.append(row)
        kept_lines.append(line)
    parsed.rows, parsed.lines = kept_rows, kept_lines


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
