#!/usr/bin/env python3
"""The notes app's command-line tool, everything through the ORM.

    notes_tool.py fill N      deterministic rows (edge values included) into
                              the database of $NOTES_DB_URL (made by
                              `alembic upgrade head`)
    notes_tool.py dump URL    every row of every mapped table, ordered by
                              primary key, as canonical JSON on stdout: the
                              dumps of two databases holding the same data
                              are identical text
    notes_tool.py write URL   new rows in every table; checks that each new
                              key follows the largest one already there and
                              that the new note reads back as written

URLs: sqlite:////abs/path.db, postgresql+psycopg://user@/db?host=/socket/dir
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import random
import sys
import uuid
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Session

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from notes.models import (  # noqa: E402
    NOTE_STATUSES,
    Base,
    LoginEvent,
    Note,
    Notebook,
    NoteTag,
    Role,
    Tag,
    User,
)

UTC = dt.timezone.utc
BASE_TIME = dt.datetime(2024, 2, 29, 13, 45, 10, 123456)

# Strings that trip up a loader: quoting, COPY's escapes, encodings.
AWKWARD_TEXT = [
    "",
    "plain",
    "Zoë Ångström — naïve café",
    "日本語のノート 🎉👩‍💻",
    "tab\there, newline\nthere, crlf\r\nend",
    "backslash \\ and \\N and \\\\N",
    "quotes ' \" ` and a ; DROP TABLE notes; --",
    "trailing space ",
    "\u00a0non-breaking\u2028line separator",
    "x" * 10_000,
]

# Values SQLAlchemy stores as DATETIME text relative to 1970-01-01 on SQLite.
INTERVALS = [
    dt.timedelta(0),
    dt.timedelta(minutes=5),
    dt.timedelta(seconds=-1),
    dt.timedelta(microseconds=1),
    dt.timedelta(microseconds=-1),
    dt.timedelta(days=400, hours=3, microseconds=123456),
    dt.timedelta(days=-3, hours=2),
    dt.timedelta(hours=36),
    dt.timedelta(days=-20000),
    None,
]

FLOATS = [0.1, -1.5e300, 5e-324, 1e308, 1 / 3, -0.5, 2.0**53 + 2, 0.0, None, 123456.789]

BIGINTS = [2**63 - 1, -(2**63), 0, -1, 2**31, 2**53 + 1, None]

JSON_DOCS = [
    {"b": 2, "a": [1, 2.5, "x"], "nested": {"k": None, "t": True, "f": False}},
    {"ünïcode ключ": "значение 🎉", "empty": "", "list": []},
    [1, "two", 3.0, None, {"x": {}}],
    {"big": 2**53 + 1, "bigger": 2**64, "tiny": 1e-300, "neg": -12.5},
    "a JSON string, not an object",
    0,
    {},
    None,  # stored as JSON null (the column is nullable, none_as_null=False)
    {"quote\"key": "back\\slash", "nl": "a\nb", "tab": "\t"},
    True,
]

INT_LISTS = [[1, 2, 3], [], None, [None, 5], [-(2**31), 2**31 - 1], [42]]

PRICES = [
    Decimal("19.990"),
    Decimal("-0.001"),
    Decimal("0"),
    Decimal("9999999.999"),
    Decimal("-9999999.999"),
    Decimal("1234.5"),
    None,
    Decimal("0.125"),
]

TIMES = [dt.time(0, 0), dt.time(23, 59, 59, 999999), dt.time(13, 45, 10, 123456), None, dt.time(12, 0, 1)]

DATES = [dt.date(2024, 2, 29), dt.date(1, 1, 1), dt.date(9999, 12, 31), None, dt.date(1969, 12, 31)]

NAIVE_DATETIMES = [
    BASE_TIME,
    dt.datetime(1900, 1, 1),
    dt.datetime(2038, 1, 19, 3, 14, 8),
    dt.datetime(1969, 12, 31, 23, 59, 59, 999999),
    dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
]

IPS = ["192.168.0.1", "2001:db8::1", "10.1.2.3/8", "127.0.0.1", "fe80::1:2:3:4", None, "0.0.0.0"]


def engine_for(url: str) -> sa.Engine:
    return sa.create_engine(url, poolclass=sa.pool.NullPool)


def aware(d: dt.datetime) -> dt.datetime:
    """The app keeps timezone-aware datetimes in UTC."""
    return d.replace(tzinfo=UTC)


def fill(url: str, n: int) -> None:
    rng = random.Random(20240229)
    pick = lambda values, i: values[i % len(values)]  # noqa: E731
    n_users = max(4, n // 10)
    with Session(engine_for(url)) as s:
        users = []
        for i in range(n_users):
            u = User(
                uid=uuid.UUID(int=rng.getrandbits(128), version=4),
                email=f"User{i}.Ünï@Example.com" if i % 3 == 0 else f"user{i}@example.org",
                handle=("é" * 40) if i == 1 else f"user_{i}",
                display_name=[None, "", "Zoë 🎉 日本語", f"User {i}"][i % 4],
                role=list(Role)[i % 3],
                is_active=i % 5 != 4,
                karma=pick(BIGINTS, i) if pick(BIGINTS, i) is not None else 7,
                score=pick(FLOATS, i),
                created_at=aware(pick(NAIVE_DATETIMES, i) - dt.timedelta(seconds=i)),
                avatar=[None, b"", b"\x00\xff\x10\\N\n", bytes(range(256)) * 4][i % 4],
                last_ip=pick(IPS, i),
            )
            users.append(u)
        s.add_all(users)
        s.flush()

        tags = [Tag(name=name) for name in ["work", "home", "ideas", "日本", "", "a" * 40, "urgent", "later"]]
        s.add_all(tags)

        notebooks = []
        for i in range(max(3, n // 5)):
            nb = Notebook(
                owner=users[i % n_users],
                title="" if i == 2 else f"Notebook {i} — ✎",
                created=pick(NAIVE_DATETIMES, i) - dt.timedelta(microseconds=i),
            )
            if i >= 3 and i % 2 == 1:
                nb.parent = notebooks[i // 2]
            notebooks.append(nb)
        s.add_all(notebooks)
        s.flush()
        # Re-parented later: the first notebook now lives inside the last
        # one, a parent with a larger id than its child.
        notebooks[0].parent = notebooks[-1]

        notes = []
        for i in range(n):
            note = Note(
                notebook=notebooks[i % len(notebooks)],
                author=None if i % 7 == 6 else users[i % n_users],
                title=pick(AWKWARD_TEXT, i)[:40],
                body=pick(AWKWARD_TEXT, i + 3),
                status=pick(NOTE_STATUSES, i),
                meta=pick(JSON_DOCS, i),
                related_ids=pick(INT_LISTS, i),
                price=pick(PRICES, i),
                reading_time=pick(INTERVALS, i),
                remind_at=pick(TIMES, i),
                due=pick(DATES, i),
                updated_at=pick(NAIVE_DATETIMES, i) - dt.timedelta(microseconds=i % 3),
                published_at=None if i % 4 == 0 else aware(BASE_TIME + dt.timedelta(hours=i, microseconds=i)),
                pinned=i % 3 == 0,
                word_count=pick(BIGINTS, i + 2),
            )
            notes.append(note)
        s.add_all(notes)
        s.flush()

        for i, note in enumerate(notes):
            for k in range(i % 3):
                s.add(
                    NoteTag(
                        note=note,
                        tag=tags[(i + k) % len(tags)],
                        added_at=aware(BASE_TIME + dt.timedelta(days=k, microseconds=i)),
                        weight=pick(FLOATS, i + k) if pick(FLOATS, i + k) is not None else 1.0,
                    )
                )

        for i in range(n):
            s.add(
                LoginEvent(
                    user_id=users[i % n_users].id,
                    ip=pick(IPS, i) or "::1",
                    at=aware(BASE_TIME + dt.timedelta(minutes=i, microseconds=i * 7)),
                    session_length=pick(INTERVALS, i + 1),
                    ok=i % 6 != 5,
                )
            )
        s.commit()
    print(f"filled {url}: {n_users} users, {len(notebooks)} notebooks, {n} notes, {n} login events")


def render(column: sa.Column, value):
    """A canonical, exact rendering of what the ORM returned."""
    if value is None:
        return None
    if isinstance(column.type, sa.JSON):
        # JSON on SQLite, jsonb or integer[] on PostgreSQL: the Python value.
        return {"json": value}
    if isinstance(value, dt.datetime):
        if isinstance(column.type, sa.DateTime) and column.type.timezone:
            # SQLite keeps no offset: what the app stored (UTC) comes back
            # naive; PostgreSQL's timestamptz comes back aware.
            if value.tzinfo is not None:
                value = value.astimezone(UTC).replace(tzinfo=None)
            return "datetime-utc:" + value.isoformat()
        assert value.tzinfo is None, f"{column}: {value!r} is aware"
        return "datetime:" + value.isoformat()
    if isinstance(value, (dt.date, dt.time)):
        return f"{type(value).__name__}:{value.isoformat()}"
    if isinstance(value, bytes):
        return "bytes:" + value.hex()
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address,
                          ipaddress.IPv4Interface, ipaddress.IPv6Interface)):
        # inet on PostgreSQL (psycopg gives ipaddress objects), text on SQLite.
        return repr(str(value))
    # int, bool, float, str, Decimal, UUID, timedelta, enum members.
    return repr(value)


def dump(url: str) -> None:
    out = {}
    with Session(engine_for(url)) as s:
        for mapper in sorted(Base.registry.mappers, key=lambda m: m.local_table.name):
            cls, table = mapper.class_, mapper.local_table
            cols = [(attr.key, attr.columns[0]) for attr in mapper.column_attrs]
            rows = []
            for obj in s.scalars(sa.select(cls).order_by(*mapper.primary_key)):
                rows.append({key: render(col, getattr(obj, key)) for key, col in cols})
            out[table.name] = rows
        out["alembic_version"] = s.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
    json.dump(out, sys.stdout, sort_keys=True, ensure_ascii=False, indent=1)
    sys.stdout.write("\n")
    counts = ", ".join(f"{t} {len(r)}" for t, r in sorted(out.items()))
    print(f"dumped {counts}", file=sys.stderr)


def write(url: str) -> None:
    """New rows in every table, as the app would add them after the move."""
    problems = []
    with Session(engine_for(url)) as s:
        def top(cls):
            return s.scalar(sa.select(sa.func.max(cls.id))) or 0

        before = {cls.__tablename__: top(cls) for cls in (User, Notebook, Note, Tag, LoginEvent)}
        user = User(
            email="New.Person@Example.com",
            handle="new_person",
            display_name="Nouvelle personne ✓",
            role=Role.WRITER,
            karma=-(2**63),
            score=2.5,
            created_at=aware(dt.datetime(2025, 1, 2, 3, 4, 5, 678901)),
            avatar=b"\x00\x01",
            last_ip="2001:db8::42",
        )
        parent = s.scalars(sa.select(Notebook).order_by(Notebook.id)).first()
        notebook = Notebook(owner=user, parent=parent, title="Moved to PostgreSQL", created=BASE_TIME)
        tag = Tag(name="after-the-move")
        written = dict(
            title="written after the export",
            body="línea\nzwei",
            status="published",
            meta={"after": True, "n": [1, 2.5]},
            related_ids=[3, None, 4],
            price=Decimal("-1234.567"),
            reading_time=dt.timedelta(days=-2, seconds=5, microseconds=7),
            remind_at=dt.time(7, 8, 9, 10),
            due=dt.date(2025, 12, 31),
            updated_at=dt.datetime(2025, 1, 2, 3, 4, 5, 6),
            published_at=aware(dt.datetime(2025, 1, 2, 3, 4, 5, 6)),
            pinned=True,
            word_count=2**62,
        )
        note = Note(notebook=notebook, author=user, **written)
        link = NoteTag(note=note, tag=tag, added_at=aware(BASE_TIME), weight=0.75)
        s.add_all([user, notebook, tag, note, link])
        s.flush()
        event = LoginEvent(user_id=user.id, ip="203.0.113.9", at=aware(BASE_TIME),
                           session_length=dt.timedelta(minutes=-90), ok=False)
        s.add(event)
        s.flush()
        new = {"users": user.id, "notebooks": notebook.id, "notes": note.id, "tags": tag.id,
               "login_events": event.id}
        for table, new_id in new.items():
            if new_id != before[table] + 1:
                problems.append(f"{table}: new id {new_id}, expected {before[table] + 1} (after the largest)")
        s.commit()
        note_id = note.id

    # Read back in a fresh session: what was written is what comes back.
    with Session(engine_for(url)) as s:
        back = s.get(Note, note_id)
        for key, value in written.items():
            col = Note.__table__.c[key]
            if render(col, getattr(back, key)) != render(col, value):
                problems.append(f"notes.{key}: wrote {value!r}, read {getattr(back, key)!r}")
        if s.get(NoteTag, (note_id, new["tags"])) is None:
            problems.append("note_tags: the new (note, tag) row is missing")
    if problems:
        sys.exit("write check failed:\n  " + "\n  ".join(problems))
    print("wrote " + ", ".join(f"{t} id {i} (after {before[t]})" for t, i in new.items()))


def main(argv: list[str]) -> None:
    if len(argv) == 2 and argv[0] == "fill":
        url = os.environ.get("NOTES_DB_URL") or sys.exit("fill: set NOTES_DB_URL")
        fill(url, int(argv[1]))
    elif len(argv) == 2 and argv[0] == "dump":
        dump(argv[1])
    elif len(argv) == 2 and argv[0] == "write":
        write(argv[1])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
