"""The notes app's ORM models (SQLAlchemy 2.x, typed declarative mapping).

The same models run on SQLite (development, and what litevault backs up) and
PostgreSQL (production): where PostgreSQL has a better type, a variant says
so, and the Alembic revisions in migrations/versions create the schema on
both.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from decimal import Decimal
from typing import Any, Optional

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# PostgreSQL-only types, with what SQLite stores instead.
JSONDoc = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
IntList = sa.JSON().with_variant(postgresql.ARRAY(sa.Integer()), "postgresql")
IPAddress = sa.String(45).with_variant(postgresql.INET(), "postgresql")
Email = sa.String(120).with_variant(postgresql.CITEXT(), "postgresql")
# bigint on PostgreSQL, but SQLite only autoincrements an INTEGER PRIMARY KEY.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class Role(enum.Enum):
    """Stored by name (READER, ...), as SQLAlchemy does for a Python enum."""

    READER = "reader"
    WRITER = "writer"
    ADMIN = "admin"


NOTE_STATUSES = ("draft", "published", "archived")


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    uid: Mapped[uuid.UUID] = mapped_column(sa.Uuid(), unique=True, default=uuid.uuid4)
    email: Mapped[str] = mapped_column(Email, unique=True)
    handle: Mapped[str] = mapped_column(sa.String(40))
    display_name: Mapped[Optional[str]] = mapped_column(sa.Text())
    role: Mapped[Role] = mapped_column(sa.Enum(Role, name="user_role"))
    is_active: Mapped[bool] = mapped_column(sa.Boolean(), default=True)
    karma: Mapped[int] = mapped_column(sa.BigInteger(), default=0)
    score: Mapped[Optional[float]] = mapped_column(sa.Float())
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))
    avatar: Mapped[Optional[bytes]] = mapped_column(sa.LargeBinary())
    last_ip: Mapped[Optional[str]] = mapped_column(IPAddress)

    notebooks: Mapped[list[Notebook]] = relationship(back_populates="owner")


class Notebook(Base):
    __tablename__ = "notebooks"

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    # Self-referential: notebooks nest.
    parent_id: Mapped[Optional[int]] = mapped_column(
        sa.ForeignKey("notebooks.id", ondelete="CASCADE")
    )
    title: Mapped[str] = mapped_column(sa.String(40))
    created: Mapped[dt.datetime] = mapped_column(sa.DateTime())

    owner: Mapped[User] = relationship(back_populates="notebooks")
    parent: Mapped[Optional[Notebook]] = relationship(remote_side=[id], back_populates="children")
    children: Mapped[list[Notebook]] = relationship(back_populates="parent")
    notes: Mapped[list[Note]] = relationship(back_populates="notebook")


class Note(Base):
    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    notebook_id: Mapped[int] = mapped_column(sa.ForeignKey("notebooks.id", ondelete="CASCADE"))
    author_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("users.id"))
    title: Mapped[str] = mapped_column(sa.String(40))
    body: Mapped[str] = mapped_column(sa.Text(), default="")
    status: Mapped[str] = mapped_column(
        sa.Enum(*NOTE_STATUSES, name="note_status", create_constraint=True), default="draft"
    )
    meta: Mapped[Optional[Any]] = mapped_column(JSONDoc)
    related_ids: Mapped[Optional[list[int]]] = mapped_column(IntList)
    price: Mapped[Optional[Decimal]] = mapped_column(sa.Numeric(10, 3))
    reading_time: Mapped[Optional[dt.timedelta]] = mapped_column(sa.Interval())
    remind_at: Mapped[Optional[dt.time]] = mapped_column(sa.Time())
    due: Mapped[Optional[dt.date]] = mapped_column(sa.Date())
    updated_at: Mapped[dt.datetime] = mapped_column(sa.DateTime())
    published_at: Mapped[Optional[dt.datetime]] = mapped_column(sa.DateTime(timezone=True))
    pinned: Mapped[bool] = mapped_column(sa.Boolean(), default=False)
    # Added by revision 0002.
    word_count: Mapped[Optional[int]] = mapped_column(sa.BigInteger())

    notebook: Mapped[Notebook] = relationship(back_populates="notes")
    author: Mapped[Optional[User]] = relationship()
    tag_links: Mapped[list[NoteTag]] = relationship(back_populates="note")


class Tag(Base):
    __tablename__ = "tags"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(40), unique=True)


class NoteTag(Base):
    """Composite primary key: one row per (note, tag)."""

    __tablename__ = "note_tags"

    note_id: Mapped[int] = mapped_column(
        sa.ForeignKey("notes.id", ondelete="CASCADE"), primary_key=True
    )
    tag_id: Mapped[int] = mapped_column(sa.ForeignKey("tags.id"), primary_key=True)
    added_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))
    weight: Mapped[float] = mapped_column(sa.Float(), default=1.0)

    note: Mapped[Note] = relationship(back_populates="tag_links")
    tag: Mapped[Tag] = relationship()


class LoginEvent(Base):
    """Added by revision 0002: a bigint identity key on PostgreSQL."""

    __tablename__ = "login_events"

    id: Mapped[int] = mapped_column(BigId, sa.Identity(), primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    ip: Mapped[str] = mapped_column(IPAddress)
    at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))
    session_length: Mapped[Optional[dt.timedelta]] = mapped_column(sa.Interval())
    ok: Mapped[bool] = mapped_column(sa.Boolean())
