"""Importing the company's user directory from CSV exports."""

from __future__ import annotations

from pathlib import Path

import pytest

from rightsdesk.accounts import AccountImportError
from rightsdesk.config_sections import DatabaseSettings
from rightsdesk.db import Database
from rightsdesk.service import Desk

HEADER = "account_id,email,phone,name,username\n"


async def test_import_inserts_updates_and_reports_bad_lines(desk: Desk, tmp_path: Path) -> None:
    csv = tmp_path / "accounts.csv"
    csv.write_text(
        "\ufeff"  # Excel's UTF-8 BOM
        + HEADER
        + "u1,Alice@Example.com,13800138000,张三,alice\n"
        + "u2,not-an-email,,,\n"
        + ",bob@example.com,,,\n"
        + "u3,bob@example.com,,Bob,\n",
        encoding="utf-8",
    )
    report = await desk.accounts.import_csv(csv)
    assert (report.rows, report.imported) == (4, 2)
    assert report.rejected == [(3, "not an email address in column email"), (4, "empty account_id")]
    alice = await desk.accounts.find_by_email("ALICE@example.com ")
    assert alice is not None
    assert (alice.id, alice.name, alice.username) == ("u1", "张三", "alice")

    csv.write_text(HEADER + "u1,alice.new@example.com,,张三,alice\n", encoding="utf-8")
    await desk.accounts.import_csv(csv)
    assert await desk.accounts.find_by_email("alice@example.com") is None
    moved = await desk.accounts.find_by_email("alice.new@example.com")
    assert moved is not None
    assert moved.id == "u1"
    assert await desk.accounts.count() == 2


async def test_gbk_export_from_a_chinese_spreadsheet(desk: Desk, tmp_path: Path) -> None:
    csv = tmp_path / "accounts.csv"
    csv.write_bytes((HEADER + "u9,wang@example.cn,,王芳,\n").encode("gbk"))
    report = await desk.accounts.import_csv(csv)
    assert report.imported == 1
    account = await desk.accounts.find_by_email("wang@example.cn")
    assert account is not None
    assert account.name == "王芳"


async def test_large_import_is_batched_with_progress(desk: Desk, tmp_path: Path) -> None:
    csv = tmp_path / "accounts.csv"
    rows = "".join(f"u{i},user{i}@example.com,,,\n" for i in range(2500))
    csv.write_text(HEADER + rows, encoding="utf-8")
    seen: list[int] = []
    report = await desk.accounts.import_csv(csv, progress=seen.append)
    assert report.imported == 2500
    assert seen == [1000, 2000, 2500]
    assert await desk.accounts.count() == 2500


async def test_missing_column_is_refused(desk: Desk, tmp_path: Path) -> None:
    csv = tmp_path / "accounts.csv"
    csv.write_text("id,mail\nu1,a@example.com\n", encoding="utf-8")
    with pytest.raises(AccountImportError, match="missing column"):
        await desk.accounts.import_csv(csv)


async def test_company_directory_query_cannot_write(postgres_database: str, desk: Desk) -> None:
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from rightsdesk.accounts import CompanyDirectory

    company = Database(DatabaseSettings(url=postgres_database))
    async with company.engine.begin() as conn:
        await conn.execute(text("DROP TABLE IF EXISTS company_users"))
        await conn.execute(text("CREATE TABLE company_users (id int, email text)"))
        await conn.execute(text("INSERT INTO company_users VALUES (7, 'a@example.com')"))
    reader = CompanyDirectory(
        postgres_database,
        "SELECT id AS account_id, email FROM company_users WHERE email = :email",
        desk.clock,
    )
    writer = CompanyDirectory(
        postgres_database,
        "DELETE FROM company_users WHERE email = :email RETURNING id AS account_id, email",
        desk.clock,
    )
    try:
        async with desk.db.transaction() as session:
            found = await reader.find_registered(session, "A@example.com")
            assert found is not None
            assert found.id == "7"
        with pytest.raises(DBAPIError, match="read-only transaction"):
            async with desk.db.transaction() as session:
                await writer.find_registered(session, "a@example.com")
        async with company.engine.connect() as conn:
            left = (await conn.execute(text("SELECT count(*) FROM company_users"))).scalar()
        assert left == 1
    finally:
        await reader.dispose()
        await writer.dispose()
        async with company.engine.begin() as conn:  # the shared test database stays clean
            await conn.execute(text("DROP TABLE company_users"))
        await company.dispose()
