"""CSV import (page and command) and export (page and command), with every malformed file."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.test import Client

from users.models import VpnUser
from users.tests.factories import make_users

pytestmark = pytest.mark.django_db

GOOD = (
    "username,protocol,email,data_limit,expire_at,note\n"
    "ann,vless,ann@example.org,10GB,2030-01-01,hello\n"
    "ben,wireguard,,,,\n"
)


def _upload(client: Client, content: bytes | str, step: str = "import", **extra: str) -> Any:
    data = content.encode() if isinstance(content, str) else content
    upload = SimpleUploadedFile("users.csv", data, content_type="text/csv")
    return client.post("/users/import/", {"file": upload, "step": step, **extra})


def _text(response: Any) -> str:
    return response.content.decode()


def test_checking_a_good_file_writes_nothing(owner_client: Client) -> None:
    response = _upload(owner_client, GOOD, step="check")
    assert "All 2 rows are good" in _text(response)
    assert not VpnUser.objects.exists()


def test_importing_a_good_file_writes_every_row(owner_client: Client) -> None:
    response = _upload(owner_client, GOOD)
    assert "Imported 2 users" in _text(response)
    ann = VpnUser.objects.get(username="ann")
    assert (ann.data_limit, ann.note, ann.credential_uuid is not None) == (10**10, "hello", True)


def test_a_file_with_bad_rows_lists_every_one_by_line_and_writes_nothing(owner_client: Client) -> None:
    make_users(1, prefix="taken")
    content = (
        "username,protocol,data_limit\n"
        "good1,vless,\n"
        "Bad Name,vless,\n"
        "good1,vless,\n"
        "taken0000,vless,\n"
        "neg,vless,-1\n"
        "proto,carrier-pigeon,\n"
        "short,vless\n"
        "formula,vless,=1+1\n"
    )
    response = _upload(owner_client, content)
    html = _text(response)
    assert response.status_code == 400 and "Nothing was imported" in html
    for line in range(3, 10):
        assert f"<td>{line}</td>" in html
    assert "<td>2</td>" not in html
    assert "repeats row 2" in html and "already exists" in html and "spreadsheet formula" in html
    assert VpnUser.objects.count() == 1


def test_the_htmx_check_answers_with_the_report_partial(owner_client: Client) -> None:
    upload = SimpleUploadedFile("users.csv", b"username,protocol\nx,vless\n", content_type="text/csv")
    response = owner_client.post("/users/import/", {"file": upload, "step": "import"}, headers={"HX-Request": "true"})
    assert response.status_code == 200 and "<html" not in _text(response)
    assert "Nothing was imported" in _text(response) and "<td>2</td>" in _text(response)


def test_write_good_rows_imports_the_rest_when_asked(owner_client: Client) -> None:
    content = "username,protocol\ngood1,vless\nx,vless\ngood2,shadowsocks\n"
    response = _upload(owner_client, content, write_good_rows="on")
    assert "Imported 2 users; 1 bad line skipped" in _text(response)
    assert set(VpnUser.objects.values_list("username", flat=True)) == {"good1", "good2"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "file is empty"),
        (b"username,protocol\n", "has a header but no rows"),
        (b"name,kind\nann,vless\n", "must name the columns"),
        (b"username,protocol,password\nann,vless,x\n", "unknown: password"),
        (b"username,protocol,protocol\nann,vless,vless\n", "names a column twice"),
        ("username,protocol\nj\u00f6rg,vless\n".encode("latin-1"), "not UTF-8"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not UTF-8"),
    ],
)
def test_a_malformed_file_gets_a_clear_message_and_writes_nothing(
    owner_client: Client, content: bytes, message: str
) -> None:
    response = _upload(owner_client, content)
    assert response.status_code in (200, 400)
    assert message in _text(response)
    assert not VpnUser.objects.exists()


def test_a_byte_order_mark_is_fine(owner_client: Client) -> None:
    response = _upload(owner_client, "\ufeff" + GOOD)
    assert "Imported 2 users" in _text(response)


def test_windows_line_endings_and_quoted_cells_are_fine(owner_client: Client) -> None:
    content = 'username,protocol,note\r\nann,vless,"hello, ""world""\r\nsecond line"\r\n'
    assert "Imported 1 users" in _text(_upload(owner_client, content))
    assert VpnUser.objects.get().note == 'hello, "world"\r\nsecond line'


def test_a_file_of_a_million_lines_is_refused_before_it_is_read(owner_client: Client) -> None:
    body = "username,protocol,email\n" + "".join(
        f"user{i:07d},vless,user{i:07d}@example.org\n" for i in range(1_000_000)
    )
    response = _upload(owner_client, body)
    assert response.status_code == 400
    assert "the page takes up to" in _text(response)
    assert not VpnUser.objects.exists()


def test_more_rows_than_the_page_allows_are_refused(owner_client: Client, settings: Any) -> None:
    settings.USERS_IMPORT_MAX_ROWS = 100
    body = "username,protocol\n" + "".join(f"user{i:04d},vless\n" for i in range(101))
    response = _upload(owner_client, body)
    assert "more than 100 rows" in _text(response)
    assert not VpnUser.objects.exists()


def test_the_import_page_needs_the_add_permission(stranger_client: Client) -> None:
    assert _upload(stranger_client, GOOD).status_code == 403
    assert not VpnUser.objects.exists()


# --- export ------------------------------------------------------------------------------


def _export(client: Client, query: str = "") -> list[list[str]]:
    response = client.get(f"/users/export.csv{query}")
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"].startswith("text/csv")
    text = response.getvalue().decode()
    return list(csv.reader(io.StringIO(text)))


def test_the_export_streams_the_filtered_users_without_credentials(owner_client: Client) -> None:
    make_users(3, protocol="shadowsocks")
    make_users(2, prefix="wg", protocol="wireguard")
    rows = _export(owner_client, "?protocol=shadowsocks")
    assert rows[0][:4] == ["username", "email", "protocol", "status"]
    assert [row[0] for row in rows[1:]] == ["user0000", "user0001", "user0002"]
    everything = str(_export(owner_client))
    for secret in VpnUser.objects.values_list("credential_password", "wg_private_key"):
        assert all(value not in everything for value in secret if value)


def test_cells_that_look_like_formulas_are_escaped_and_reimport_cleanly(owner_client: Client) -> None:
    from users.services import users_create_batch

    notes = ["=HYPERLINK(1)", "+1", "-2", "@SUM(A1)", "plain"]
    users_create_batch(
        actor=None, rows=[{"username": f"f{i:03d}", "protocol": "vless", "note": n} for i, n in enumerate(notes)]
    )
    rows = _export(owner_client)
    note_column = rows[0].index("note")
    exported = {row[0]: row[note_column] for row in rows[1:]}
    assert exported["f000"] == "'=HYPERLINK(1)" and exported["f004"] == "plain"
    assert all(value.startswith("'") for name, value in exported.items() if name != "f004")
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    VpnUser.objects.all().delete()
    assert "Imported 5 users" in _text(_upload(owner_client, buffer.getvalue()))
    assert dict(VpnUser.objects.values_list("username", "note"))["f000"] == "=HYPERLINK(1)"


@pytest.mark.parametrize("cell", ["\tcmd", "\rcmd", "=1", "+1", "-1", "@x"])
def test_every_formula_trigger_is_escaped(cell: str) -> None:
    from users.csv_io import escape_cell

    assert escape_cell(cell) == "'" + cell


def test_an_export_with_a_bad_filter_is_a_400_with_the_reason(owner_client: Client) -> None:
    response = owner_client.get("/users/export.csv?username=a*")
    assert response.status_code == 400 and "at least 3 characters" in _text(response)


# --- the commands -------------------------------------------------------------------------


def test_createusers_makes_users_and_prints_progress() -> None:
    out = io.StringIO()
    call_command("createusers", "--count", "30", "--protocol", "wireguard", "--prefix", "load-", stdout=out)
    assert "created 30 of 30 users" in out.getvalue()
    assert VpnUser.objects.filter(username__startswith="load-", protocol="wireguard").count() == 30


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--count", "0"], "between 1 and"),
        (["--count", "-5"], "between 1 and"),
        (["--count", "5", "--prefix", "x" * 40], "too long"),
        (["--count", "5", "--prefix", "BAD PREFIX "], "refused"),
        (["--count", "5", "--data-limit=-3GB"], "negative"),
    ],
)
def test_createusers_refuses_bad_arguments(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("createusers", *args, stdout=io.StringIO())
    assert not VpnUser.objects.exists()


def test_createusers_refuses_an_unknown_protocol() -> None:
    with pytest.raises(CommandError, match="invalid choice"):
        call_command("createusers", "--count", "3", "--protocol", "openvpn", stdout=io.StringIO())


def test_importusers_imports_a_good_file(tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    path.write_text(GOOD)
    out = io.StringIO()
    call_command("importusers", str(path), stdout=out)
    assert "Imported 2 users" in out.getvalue()
    assert VpnUser.objects.count() == 2


def test_importusers_reports_bad_lines_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    path.write_text("username,protocol\nok-user,vless\nno good,vless\n")
    err = io.StringIO()
    with pytest.raises(CommandError, match="nothing was written"):
        call_command("importusers", str(path), stdout=io.StringIO(), stderr=err)
    assert "line 3: username" in err.getvalue()
    assert not VpnUser.objects.exists()


def test_importusers_dry_run_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    path.write_text(GOOD)
    out = io.StringIO()
    call_command("importusers", str(path), "--dry-run", stdout=out)
    assert "dry run" in out.getvalue() and not VpnUser.objects.exists()


def test_importusers_refuses_a_file_in_another_encoding(tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    path.write_bytes("username,protocol\nj\u00f6rg,vless\n".encode("utf-16"))
    with pytest.raises(CommandError, match="not UTF-8"):
        call_command("importusers", str(path), stdout=io.StringIO())


def test_exportusers_writes_the_filtered_users_to_a_file(tmp_path: Path) -> None:
    make_users(3)
    make_users(2, prefix="off", is_active=False)
    path = tmp_path / "out.csv"
    err = io.StringIO()
    call_command("exportusers", "--status", "disabled", "--output", str(path), stderr=err)
    rows = list(csv.reader(io.StringIO(path.read_text())))
    assert [row[0] for row in rows[1:]] == ["off0000", "off0001"]
    assert "exported 2 users" in err.getvalue()


def test_exportusers_refuses_a_bad_filter() -> None:
    with pytest.raises(CommandError, match="valid choice"):
        call_command("exportusers", "--status", "sleepy", stdout=io.StringIO(), stderr=io.StringIO())
