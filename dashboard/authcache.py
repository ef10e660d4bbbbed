"""Who a request's user is and what they may do, read once and shared: no query per page.

Every page checks the same things: the session's user (``auth_user``), that user's
permissions (two queries: their own and their groups') and the accounts granted to them
(``AccountAccess``). They change a few times a month, and were read four times per page view:
the largest part of a warm overview's cost, and work for PostgreSQL on every view.

:class:`CachedModelBackend` is Django's ``ModelBackend`` whose ``get_user`` keeps, in the
shared cache, the user together with their permissions and grants, for ``AUTH_CACHE_SECONDS``.
The permission checks then read what came with the user (Django's ``ModelBackend`` keeps its
answers on the user object, and so does :func:`dashboard.access.accounts_for`).

It is never staler than the database as Django sees it:

* every snapshot carries the *generation* it was read under, and a snapshot of another
  generation is not used. The generation moves on with every change of a user, a group, a
  permission, a user's groups or permissions, a group's permissions or a grant (Django's
  signals, in the admin, in ``manage.py`` commands, in the ORM), at once and again when the
  change's transaction commits: a snapshot read between the two, from the data before the
  change, is thrown away too;
* the generation is read before the database, so a snapshot read across a change carries the
  generation from before it;
* a change the ORM sends no signal for (``QuerySet.update()``, SQL by hand) is seen at the
  latest when the snapshot expires (``AUTH_CACHE_SECONDS``, default 60).

Django still checks the session against the user (the session hash comes from the password:
a new password logs other sessions out), ``is_active`` is checked when the snapshot is read
from the database, and a deactivated user's change moves the generation on. When the cache
does not answer, every request reads the database, as before. ``AUTH_CACHE_SECONDS = 0``
turns the snapshot off.

The snapshot holds the user's row, password hash included (Django needs it to check the
session): the shared cache holds the sessions themselves already, which are worth more, and
must be private to the dashboard either way (see the README).
"""

from __future__ import annotations

import pickle
import time
import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Group, Permission, User
from django.core.cache import cache
from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save

from dashboard import metrics, prefetch
from dashboard.memo import Recent

GENERATION_KEY = "authz-generation"
#: Part of every snapshot's key: a new version when what a snapshot holds changes shape.
SNAPSHOT_VERSION = 1


def _user_key(user_id: Any) -> str:
    return f"authz-user:v{SNAPSHOT_VERSION}:{user_id}"


@dataclass(frozen=True)
class _Snapshot:
    generation: str
    #: When the database was read (wall-clock seconds): it is used until then + the period.
    read_at: float
    #: The pickled user, permissions and grants included: each request gets its own copy.
    user_blob: bytes

    def usable(self, generation: str | None) -> bool:
        return (
            generation is not None
            and self.generation == generation
            and time.time() < self.read_at + settings.AUTH_CACHE_SECONDS
        )

    def user(self) -> User:
        user: User = pickle.loads(self.user_blob)
        return user


#: This process's own copies of snapshots, by key: with the generation prefetched with the
#: session (``dashboard.prefetch``), a warm page asks the cache nothing more about its user.
_remembered: Recent[str, _Snapshot] = Recent(4096)


class CachedModelBackend(ModelBackend):
    """``ModelBackend`` whose users come with their permissions and grants, from the cache."""

    def get_user(self, user_id: Any) -> User | None:
        seconds = settings.AUTH_CACHE_SECONDS
        if seconds <= 0:
            return super().get_user(user_id)
        key = _user_key(user_id)
        snapshot: _Snapshot | None
        if prefetch.was_prefetched(GENERATION_KEY):
            # The usual page: the generation came with the session; this process's copy of
            # the snapshot, if it has one of that generation, saves asking the cache.
            generation = prefetch.get_many([GENERATION_KEY]).get(GENERATION_KEY)
            snapshot = _remembered.get(key, None)
            if snapshot is None or not snapshot.usable(generation):
                snapshot = cache.get(key) if generation is not None else None
        else:
            found = cache.get_many([key, GENERATION_KEY])
            generation = found.get(GENERATION_KEY)
            snapshot = found.get(key)
        if snapshot is not None and snapshot.usable(generation):
            metrics.record_auth_cache(hit=True)
            _remembered.put(key, snapshot)
            return snapshot.user()
        metrics.record_auth_cache(hit=False)
        if generation is None:
            # None yet (or the cache was emptied): start one. If another process started one
            # at the same moment, this read is not kept: which of the two holds is unknown.
            generation = uuid.uuid4().hex
            if not cache.add(GENERATION_KEY, generation, None):
                return super().get_user(user_id)
        read_at = time.time()
        user = super().get_user(user_id)
        if user is not None:
            # Read now what the page will ask, so that it travels with the user.
            self.get_all_permissions(user)
            from dashboard.access import granted_account_ids

            granted_account_ids(user)
            snapshot = _Snapshot(generation, read_at, pickle.dumps(user))
            cache.set(key, snapshot, seconds)
            _remembered.put(key, snapshot)
        return user


def prefetch_keys() -> list[str]:
    """What :func:`CachedModelBackend.get_user` reads first, for ``dashboard.prefetch``."""
    return [GENERATION_KEY] if settings.AUTH_CACHE_SECONDS > 0 else []


def forget_all() -> None:
    """A user, group, permission or grant changed: no snapshot read before is used again.

    Moves the generation on now, and again when the current transaction commits (a snapshot
    read in between saw the data from before the change).
    """
    _new_generation()
    transaction.on_commit(_new_generation)


def _new_generation() -> None:
    cache.set(GENERATION_KEY, uuid.uuid4().hex, None)


def _changed(**kwargs: Any) -> None:
    forget_all()


def connect() -> None:
    """Connects the receivers that make every snapshot out of date on a change (app ready)."""
    from dashboard.models import AccountAccess

    user_model = get_user_model()
    for model in (user_model, Group, Permission, AccountAccess):
        post_save.connect(_changed, sender=model, dispatch_uid=f"authcache-save-{model}")
        post_delete.connect(_changed, sender=model, dispatch_uid=f"authcache-delete-{model}")
    for through in (
        user_model.groups.through,
        user_model.user_permissions.through,
        Group.permissions.through,
    ):
        m2m_changed.connect(_changed, sender=through, dispatch_uid=f"authcache-m2m-{through}")
