"""Create, update and delete for team-owned objects, with the policy and the audit trail."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from django.db.models import Model
from rest_framework import mixins
from rest_framework.serializers import BaseSerializer

from accounts.models import Source


class ServiceWriteMixin(mixins.CreateModelMixin, mixins.UpdateModelMixin, mixins.DestroyModelMixin):
    """Writes go through the model's service functions, which save the change and its audit
    row in one transaction (`save_service = staticmethod(services.save_server)`).

    Creating needs the add permission in the chosen team; moving needs it in the new one.
    An object that belongs to a team through another (a job's schedule) names that field in
    `owner_field`: the permission is then checked on the object it names.
    A service takes the object's many-to-many values as keyword arguments named after the
    fields (`tags=`, `servers=`).
    """

    save_service: ClassVar[Callable[..., Model]]
    delete_service: ClassVar[Callable[..., None]]
    owner_field: ClassVar[str] = "team"
    # Fields the service takes as keyword arguments rather than as attributes of the object,
    # like the many-to-many ones (a schedule's parameter values, split by the service).
    service_fields: ClassVar[frozenset[str]] = frozenset()

    def _add_perm(self) -> str:
        meta = self.get_queryset().model._meta
        return f"{meta.app_label}.add_{meta.model_name}"

    def perform_create(self, serializer: BaseSerializer[Any]) -> None:
        self.require(self._add_perm(), serializer.validated_data[self.owner_field])
        model = self.get_queryset().model
        serializer.instance = self._save(model(), serializer.validated_data)

    def perform_update(self, serializer: BaseSerializer[Any]) -> None:
        owner = serializer.validated_data.get(self.owner_field)
        if owner is not None and owner.pk != getattr(serializer.instance, f"{self.owner_field}_id"):
            self.require(self._add_perm(), owner)
        self._save(serializer.instance, serializer.validated_data)

    def perform_destroy(self, instance: Model) -> None:
        self.delete_service(instance, actor=self.request.user, source=Source.API)

    def _save(self, instance: Model, data: Mapping[str, Any]) -> Model:
        # What ModelSerializer.create/update would do, handed to the service instead.
        many = ({f.name for f in instance._meta.many_to_many} | self.service_fields) & set(data)
        for name, value in data.items():
            if name not in many:
                setattr(instance, name, value)
        return self.save_service(
            instance,
            actor=self.request.user,
            source=Source.API,
            changed_fields=data.keys(),
            **{name: data[name] for name in many},
        )
