"""Changes to teams, memberships and API tokens shared by the admin, the API and the UI.

Each change and its audit row are written in one transaction: both or neither.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone

from accounts import audit
from accounts.models import ApiToken, Membership, Source, Team, token_expiry


def save_team(
    team: Team, *, actor: Any, source: Source, changed_fields: Iterable[str] = ()
) -> Team:
    """Create a team, or save the fields named in `changed_fields` (its settings, such as
    retention), with the audit row; nothing is written when no field changed.

    Only the named fields are written: a worker claims a team's pruning by a guarded update
    of `pruned_at` meanwhile (executions.retention), which a full save would undo.
    """
    created = team._state.adding
    changed = sorted(set(changed_fields))
    if not created and not changed:
        return team
    with transaction.atomic():
        team.save(update_fields=None if created else changed)
        audit.record_saved(
            team, created=created, actor=actor, source=source, changed_fields=changed
        )
    return team


def _record_member(action: str, membership: Membership, *, actor: Any, source: Source) -> None:
    details = {"user": membership.user.get_username(), "role": membership.role.name}
    audit.record(action, membership, actor=actor, source=source, details=details)


def set_membership(team: Team, user: Any, role: Group, *, actor: Any, source: Source) -> Membership:
    """Give `user` `role` in `team`: adds them to the team, or changes the role they hold."""
    with transaction.atomic():
        membership, created = Membership.objects.update_or_create(
            team=team, user=user, defaults={"role": role}
        )
        _record_member(
            "add_member" if created else "change_member", membership, actor=actor, source=source
        )
    return membership


def remove_membership(membership: Membership, *, actor: Any, source: Source) -> None:
    with transaction.atomic():
        _record_member("remove_member", membership, actor=actor, source=source)
        membership.delete()


def issue_token(token: ApiToken, *, source: Source, made_with: ApiToken | None = None) -> str:
    """Save a new token (its user and name set, its expiry if asked for); returns the only
    copy of its secret. `made_with`: the token that authenticated the request, if any.

    Raises ValidationError for an expiry that is not allowed (accounts.models.token_expiry).
    A person makes tokens for themselves only: the actor is the token's user.
    """
    token.expires_at = token_expiry(token.expires_at, made_with=made_with)
    with transaction.atomic():
        secret = token.new_secret()
        token.save()
        audit.record("create_token", token, actor=token.user, source=source)
    return secret


def revoke_token(token: ApiToken, *, actor: Any, source: Source) -> bool:
    """Revoke the token; False (and nothing recorded) if it was revoked already."""
    now = timezone.now()
    with transaction.atomic():
        won = ApiToken.objects.filter(pk=token.pk, revoked_at=None).update(revoked_at=now)
        if won:
            token.revoked_at = now
            audit.record("revoke_token", token, actor=actor, source=source)
    return bool(won)
