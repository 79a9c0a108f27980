"""The local repository: found the way git finds it, read and written with pygit2.

Discovery and configuration go through the `git` CLI (`discovery`, re-exported
here): pygit2's discovery ignores GIT_DIR and its config ignores `git -c`
settings, and a git subcommand must see exactly what git sees.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property

from pygit2.enums import ObjectType

from ..errors import GitError, NoteUnreadable
from .discovery import Location, first_line, locate, read_config, run_git
from .libgit2_env import pygit2
from .memory_objects import objects_in_memory

__all__ = ["LOOKUP_ERRORS", "MAX_OBJECT_BYTES", "LocalRepo", "Location", "TagInfo",
           "first_line", "locate", "read_config", "run_git"]

_TYPE_NAMES = {
    ObjectType.COMMIT: "commit",
    ObjectType.TREE: "tree",
    ObjectType.BLOB: "blob",
    ObjectType.TAG: "tag",
}
MAX_OBJECT_BYTES = 1024 * 1024  # foreign objects larger than this are not parsed
# What reading a foreign object can raise: missing, wrong type, corrupt.
LOOKUP_ERRORS = (KeyError, ValueError, TypeError, AttributeError, pygit2.GitError,
                 pygit2.InvalidSpecError)


@dataclass(frozen=True)
class TagInfo:
    oid: str
    target_type: str
    tagger_name: str
    tagger_time: float | None
    raw_message: bytes


class LocalRepo:
    """Objects and refs of the local repository, the staging area for every push."""

    def __init__(self, location: Location) -> None:
        self.location = location

    @cached_property
    def repo(self) -> pygit2.Repository:
        try:
            return pygit2.Repository(str(self.location.git_dir))
        except (pygit2.GitError, KeyError) as error:
            raise GitError(f"cannot open repository: {error}") from error

    def has(self, oid: str) -> bool:
        return bool(self.repo.odb.exists(oid))

    @contextmanager
    def writing_one_pack(self) -> Iterator[None]:
        """Objects written inside land on disk as one pack when it ends, not loose.

        For many objects at once (a reap's notes): a loose object costs a
        file, often a folder, and a check of the store, about 1.3 ms each.
        Everything else this repository does inside reads the new objects
        as usual; other processes see them once the block ends. On an
        exception they are dropped.
        """
        pack_folder = self.location.common_dir / "objects" / "pack"
        with objects_in_memory(self.location.git_dir, pack_folder) as scratch:
            if scratch is None:
                yield
                return
            before = self.__dict__.get("repo")
            self.__dict__["repo"] = scratch  # the cached_property's slot
            try:
                yield
            finally:
                if before is None:
                    del self.__dict__["repo"]
                else:
                    self.__dict__["repo"] = before

    def resolve(self, revision: str) -> str | None:
        """A revision to a commit id, or None when it does not resolve."""
        try:
            obj = self.repo.revparse_single(revision)
            return str(obj.peel(pygit2.Commit).id)
        except LOOKUP_ERRORS:
            return None

    def remote_default_commit(self, remote: str) -> str:
        """The remote's default branch as last fetched (refs/remotes/R/HEAD), else HEAD."""
        for revision in (f"refs/remotes/{remote}/HEAD", f"refs/remotes/{remote}/main",
                         f"refs/remotes/{remote}/master", "HEAD"):
            commit = self.resolve(revision)
            if commit:
                return commit
        return ""

    def create_tag(self, name: str, message: str, *, tagger: str, email: str, time: float) -> str:
        """An annotated tag of the empty blob: a claim object with no ref of its own.

        The target is a blob, not a commit, so that a plain (non-forced) `git push`
        of another claim over an existing claim ref is refused by git ("needs force").
        """
        blob = self.repo.create_blob(b"")
        signature = pygit2.Signature(tagger, email, int(time), 0)
        odb = self.repo.odb
        text = (f"object {blob}\ntype blob\ntag {name}\ntagger "
                f"{_sig_text(signature)}\n\n{message}")
        return str(odb.write(ObjectType.TAG, text.encode("utf-8")))

    def read_tag(self, oid: str) -> TagInfo | None:
        """A tag's parts, bounded; None if absent or not a tag."""
        try:
            kind, size = self.repo.odb.read_header(oid)
        except LOOKUP_ERRORS:
            return None
        if kind != ObjectType.TAG:
            return TagInfo(oid, _TYPE_NAMES.get(kind, "?"), "", None, b"")
        if size > MAX_OBJECT_BYTES:
            return TagInfo(oid, "oversized", "", None, b"")
        try:
            tag = self.repo[oid]
            if not isinstance(tag, pygit2.Tag):  # never: the header said tag (narrows the type)
                return None
            tagger = tag.tagger
            if tagger is not None and tagger.time < 0:
                # git's times are unsigned: git sees no valid tagger here, and libgit2 (which
                # reads "-99999" as a date before 1970) refuses one too large, as unreadable;
                # so is this one, never a claim that looks ancient and gets reaped
                return None
            target_kind = self.repo.odb.read_header(tag.target)[0] \
                if self.repo.odb.exists(tag.target) else None
            return TagInfo(
                oid, _TYPE_NAMES.get(target_kind, "?") if target_kind is not None else "missing",
                tagger.raw_name.decode("utf-8", "replace") if tagger else "",
                float(tagger.time) if tagger else None, tag.raw_message or b"",
            )
        except LOOKUP_ERRORS:
            return None

    def read_blob(self, oid: str, limit: int = MAX_OBJECT_BYTES) -> bytes | None:
        try:
            kind, size = self.repo.odb.read_header(oid)
            if kind != ObjectType.BLOB or size > limit:
                return None
            blob = self.repo[oid]
            return blob.data if isinstance(blob, pygit2.Blob) else None
        except LOOKUP_ERRORS:
            return None

    # Notes: one notes ref per ticket, a flat tree keyed by annotated object id.

    def note_on(self, notes_tip: str | None, annotated: str) -> bytes | None:
        """The note on `annotated` in the notes commit `notes_tip`; None if none can be read."""
        try:
            return self.read_note(notes_tip, annotated)
        except NoteUnreadable:
            return None

    def read_note(self, notes_tip: str | None, annotated: str) -> bytes | None:
        """The note on `annotated` in `notes_tip`, or None when there is no readable note.

        Raises NoteUnreadable when this clone lacks an object on the way (the
        commit, a tree, the note's blob): an interrupted copy, a `git gc
        --prune=now` that has deleted part of it, a partial clone. Such a note
        may be a heartbeat: a reader that took it for "no note" would judge a
        live claim silent. What is here but is not a note (a tip that is not
        a commit, a blob too large or not a blob) is the remote's content and
        proves no life, as before: None.
        """
        if not notes_tip:
            return None
        odb = self.repo.odb
        if not odb.exists(notes_tip):
            raise NoteUnreadable(f"the notes commit {notes_tip[:12]} is not in this clone")
        try:
            commit = self.repo[notes_tip]
        except LOOKUP_ERRORS:
            return None
        if not isinstance(commit, pygit2.Commit):
            return None
        if not odb.exists(commit.tree_id):
            raise NoteUnreadable(f"the tree of notes commit {notes_tip[:12]} is not in this clone")
        try:
            found = _note_entry_strict(self.repo, commit.tree, annotated)
        except LOOKUP_ERRORS:
            return None
        if found is None:
            return None
        if not odb.exists(found):
            raise NoteUnreadable(f"the note {found[:12]} in notes commit {notes_tip[:12]}"
                                 " cannot be read in this clone", missing=found)
        return self.read_blob(found)

    def note_set_by(self, commit: str | None, annotated: str) -> bool:
        """Whether notes commit `commit` itself wrote the note on `annotated`.

        True when the note differs from the one in its first parent (or the
        commit has no parent and carries the note); False when the note came
        from an older commit, or is missing, or the parent cannot be read.
        """
        if not commit:
            return False
        try:
            current = self.repo[commit]
            if not isinstance(current, pygit2.Commit):
                return False
            entry = _note_entry(current.tree, annotated)
            if entry is None:
                return False
            if not current.parents:
                return True
            before = _note_entry(current.parents[0].tree, annotated)
        except LOOKUP_ERRORS:
            return False
        return before is None or before[1] != entry[1]

    def notes_commit(self, parent: str | None, annotated: str, text: str, *, message: str,
                     author: str, email: str, time: float) -> str:
        """A notes commit on `parent` that sets the note on `annotated` to `text`."""
        repo = self.repo
        if parent and not self.has(parent):
            # Not the remote's fault: a tip we remembered and `git gc` pruned since.
            # Callers read the notes ref from the remote first, which fetches it.
            raise GitError(f"the notes commit {parent[:12]} is not in this clone"
                           " (pruned by `git gc`?)")
        if parent:
            try:
                base_tree = repo[parent].peel(pygit2.Tree)
                if not isinstance(repo[parent], pygit2.Commit):
                    raise ValueError("not a commit")
            except LOOKUP_ERRORS:
                raise GitError(f"the remote's notes ref points to {parent[:12]}, which is not a"
                               " notes commit: fix or delete that ref on the remote") from None
        else:
            base_tree = None
        blob = repo.create_blob(text.encode("utf-8"))
        # where git keeps it: flat, or in fan-out directories (ab/cdef…) once
        # git has rewritten a large notes tree; a second copy would be ambiguous
        found = _note_entry(base_tree, annotated) if base_tree is not None else None
        path = found[0] if found else annotated
        tree = _tree_with(repo, base_tree, path.split("/"), blob)
        signature = pygit2.Signature(author, email, int(time), 0)
        parents = [pygit2.Oid(hex=parent)] if parent else []
        return str(repo.create_commit(None, signature, signature, message, tree, parents))

    def notes_history(self, tip: str, limit: int = 10000) -> Iterator[tuple[str, dict[str, str]]]:
        """(commit id, {annotated id: note blob id changed in it}) from newest to oldest."""
        repo = self.repo
        try:
            commit = repo[tip]
            if not isinstance(commit, pygit2.Commit):
                return
        except LOOKUP_ERRORS:
            return
        for count, current in enumerate(repo.walk(commit.id, pygit2.enums.SortMode.TOPOLOGICAL)):
            if count >= limit:
                return
            notes = _flat_notes(current.tree)
            before = _flat_notes(current.parents[0].tree) if current.parents else {}
            changed = {annotated: blob for annotated, blob in notes.items()
                       if before.get(annotated) != blob}
            yield str(current.id), changed


def _sig_text(signature: pygit2.Signature) -> str:
    return f"{signature.name} <{signature.email}> {signature.time} +0000"


def _note_entry(tree: pygit2.Tree, annotated: str) -> tuple[str, str] | None:
    """(path, blob id) of the note on `annotated`: flat, or under git's fan-out directories.

    git keeps notes flat until a notes tree grows large, then moves them into
    two-hex-digit directories (ab/cdef…, ab/cd/ef…); either may be on a remote.
    """
    for depth in range(0, 4):
        parts = [annotated[2 * i: 2 * i + 2] for i in range(depth)] + [annotated[2 * depth:]]
        path = "/".join(parts)
        try:
            entry = tree[path]
        except (KeyError, ValueError, TypeError):
            continue
        if entry.type_str == "blob":
            return path, str(entry.id)
    return None


def _note_entry_strict(repo: pygit2.Repository, tree: pygit2.Tree, annotated: str) -> str | None:
    """The blob id of the note on `annotated`, flat or under fan-out folders; None if absent.

    Unlike `_note_entry`, a fan-out folder whose tree this clone lacks raises
    NoteUnreadable, never reads as an absent note.
    """
    for depth in range(0, 4):
        parts = [annotated[2 * i: 2 * i + 2] for i in range(depth)] + [annotated[2 * depth:]]
        current: pygit2.Tree | None = tree
        for folder in parts[:-1]:
            if current is None or folder not in current:
                current = None
                break
            entry = current[folder]
            if entry.type_str != "tree":
                current = None
                break
            if not repo.odb.exists(entry.id):  # missing here: never "no note"
                raise NoteUnreadable(f"the notes folder {entry.id} is not in this clone")
            subtree = repo[entry.id]
            if not isinstance(subtree, pygit2.Tree):
                raise ValueError(f"{entry.id} is not a tree")
            current = subtree
        if current is None or parts[-1] not in current:
            continue
        entry = current[parts[-1]]
        if entry.type_str == "blob":
            return str(entry.id)
    return None


def _flat_notes(tree: pygit2.Tree, prefix: str = "") -> dict[str, str]:
    """{annotated id: note blob id} of a notes tree, fan-out directories flattened."""
    found: dict[str, str] = {}
    for entry in tree:
        name = prefix + (entry.name or "")
        if isinstance(entry, pygit2.Tree) and len(name) < 40:
            found.update(_flat_notes(entry, name))
        elif entry.type_str == "blob":
            found[name] = str(entry.id)
    return found


def _tree_with(repo: pygit2.Repository, base: pygit2.Tree | None, parts: list[str],
               blob: pygit2.Oid) -> pygit2.Oid:
    """`base` with the blob at the path `parts`, sub-trees rebuilt as needed."""
    builder = repo.TreeBuilder(base) if base is not None else repo.TreeBuilder()
    if len(parts) == 1:
        builder.insert(parts[0], blob, pygit2.enums.FileMode.BLOB)
        return builder.write()
    subtree = None
    if base is not None and parts[0] in base:
        existing = repo[base[parts[0]].id]
        subtree = existing if isinstance(existing, pygit2.Tree) else None
    inner = _tree_with(repo, subtree, parts[1:], blob)
    builder.insert(parts[0], inner, pygit2.enums.FileMode.TREE)
    return builder.write()
