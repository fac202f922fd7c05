"""The user's own annotations in the run database: tags on runs and groups, notes on groups (a
run's note is its row's). Only ``kni tag`` / ``kni note`` and the workbench, on a user's action,
write them; no run process does."""

from __future__ import annotations

from typing import Iterable

from sqlalchemy import delete, select, update

from .errors import StoreError
from .records import NOTE_MAX, check_tag, utcnow
from .schema import NoteRow, RunRow, TagRow


class Annotations:
    """The annotation methods of :class:`~.repository.Store` (which provides the sessions)."""

    def add_tags(self, targets: Iterable[str], tags: Iterable[str]) -> int:
        """Tag every target (``run_target`` / ``group_target``); returns the tags added."""
        targets, tags = list(dict.fromkeys(targets)), [check_tag(t) for t in dict.fromkeys(tags)]
        now = utcnow()
        added = 0
        with self._write() as s:
            have = {(t.target, t.tag) for t in s.scalars(select(TagRow).where(TagRow.target.in_(targets)))}
            for target in targets:
                for tag in tags:
                    if (target, tag) not in have:
                        s.add(TagRow(target=target, tag=tag, created_at=now))
                        added += 1
        return added

    def remove_tags(self, targets: Iterable[str], tags: Iterable[str]) -> int:
        """Remove tags from targets; returns the number removed."""
        with self._write() as s:
            gone = delete(TagRow).where(TagRow.target.in_(list(targets)), TagRow.tag.in_(list(tags)))
            return s.execute(gone).rowcount

    def set_tags(self, target: str, tags: Iterable[str]) -> None:
        """Replace the tags of one target (the TUI's edit box)."""
        tags = [check_tag(t) for t in dict.fromkeys(tags)]
        now = utcnow()
        with self._write() as s:
            gone = delete(TagRow).where(TagRow.target == target)
            s.execute(gone.where(TagRow.tag.notin_(tags)) if tags else gone)
            have = set(s.scalars(select(TagRow.tag).where(TagRow.target == target)))
            s.add_all(TagRow(target=target, tag=t, created_at=now) for t in tags if t not in have)

    def tags(self) -> dict[str, list[str]]:
        """Every target's tags, sorted (the tables are small: one query for a whole listing)."""
        out: dict[str, list[str]] = {}
        with self._read() as s:
            for target, tag in s.execute(select(TagRow.target, TagRow.tag).order_by(TagRow.target, TagRow.tag)):
                out.setdefault(target, []).append(tag)
        return out

    def set_note(self, target: str, text: str | None) -> None:
        """Set (or with an empty text, clear) the note of a run or a group."""
        text = (text or "").strip() or None
        if text is not None and len(text) > NOTE_MAX:
            raise StoreError(f"note: at most {NOTE_MAX:,} characters; got {len(text):,}")
        with self._write() as s:
            if target.startswith("run:"):
                run_id = int(target[4:])
                if not s.execute(update(RunRow).where(RunRow.id == run_id).values(note=text)).rowcount:
                    raise StoreError(f"no run with id {run_id} in {self.where}")
                return
            s.execute(delete(NoteRow).where(NoteRow.target == target))
            if text is not None:
                s.add(NoteRow(target=target, text=text, updated_at=utcnow()))

    def group_notes(self) -> dict[str, str]:
        """``{group target: note}`` for every group with a note."""
        with self._read() as s:
            return {t: x for t, x in s.execute(select(NoteRow.target, NoteRow.text))}

    def config_hashes(self, prefix: str) -> list[str]:
        """The distinct config hashes of stored runs that start with ``prefix``."""
        with self._read() as s:
            return sorted(set(s.scalars(select(RunRow.config_hash).where(RunRow.config_hash.startswith(prefix)))))


