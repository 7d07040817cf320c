"""Shapes of the ingestion API. Secrets are write-only: no response ever contains one."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rest_framework import serializers

from energy_dashboard.core import roles
from energy_dashboard.core.api import ModelSerializer
from ingestion.models import MAX_KEY_CHARS, IngestedFile, RemoteSource
from ingestion.validators import validate_printable, validate_text_block


def _for_operators(context: Mapping[str, Any]) -> bool:
    request = context.get("request")
    return request is not None and roles.can_operate(request.user)


# The mixin below goes before a DRF serializer: to mypy it is one, at run time a plain class.
if TYPE_CHECKING:
    _MixinBase = serializers.Serializer[Any]
else:
    _MixinBase = object


class _ServerWordsForOperators(_MixinBase):
    """What a remote server said is for operators: anyone may have chosen it (a banner, a
    reply), and it is shown to nobody else. Viewers get the field empty."""

    operator_only_fields: tuple[str, ...] = ()

    def to_representation(self, instance: Any) -> dict[str, Any]:
        data: dict[str, Any] = super().to_representation(instance)
        if not _for_operators(self.context):
            for name in self.operator_only_fields:
                if name in data:
                    data[name] = ""
        return data


class RemoteSourceSerializer(_ServerWordsForOperators, ModelSerializer[RemoteSource]):
    """A remote source; `password` and `private_key` may be written, never read;
    `last_error_reply` (what the server said) is empty but for operators."""

    operator_only_fields = ("last_error_reply",)

    # Declared here (write-only), so the model field's rules are repeated.
    password = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        max_length=256,
        validators=[validate_printable],
    )
    private_key = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        max_length=MAX_KEY_CHARS,
        validators=[validate_text_block],
    )
    has_password = serializers.SerializerMethodField()
    has_private_key = serializers.SerializerMethodField()

    class Meta:
        model = RemoteSource
        fields = [
            "id",
            "name",
            "protocol",
            "host",
            "port",
            "username",
            "password",
            "password_file",
            "has_password",
            "private_key",
            "private_key_file",
            "has_private_key",
            "host_key",
            "ca_file",
            "tls_verify",
            "remote_path",
            "patterns",
            "enabled",
            "interval_s",
            "settle_s",
            "time_zone",
            "import_valid_records",
            *RemoteSource.STATE_FIELDS,
        ]
        read_only_fields = RemoteSource.STATE_FIELDS

    def get_has_password(self, source: RemoteSource) -> bool:
        return bool(source.password or source.password_file)

    def get_has_private_key(self, source: RemoteSource) -> bool:
        return bool(source.private_key or source.private_key_file)

    def validate_patterns(self, value: str) -> str:
        patterns = value.split()
        if not patterns:
            raise serializers.ValidationError("name at least one file pattern, e.g. *.slg_v2")
        for pattern in patterns:
            fnmatch.translate(pattern)
        return " ".join(patterns)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if self.instance is not None and self.instance.from_settings:
            raise serializers.ValidationError(
                "this source is defined by the FTP_SA4CPS_* settings; change them instead"
            )
        protocol = attrs.get("protocol", getattr(self.instance, "protocol", RemoteSource.Protocol.FTP))
        if protocol == RemoteSource.Protocol.SFTP:
            key = attrs.get("private_key", getattr(self.instance, "private_key", ""))
            key_file = attrs.get("private_key_file", getattr(self.instance, "private_key_file", ""))
            password = attrs.get("password", getattr(self.instance, "password", ""))
            password_file = attrs.get("password_file", getattr(self.instance, "password_file", ""))
            if not (key or key_file or password or password_file):
                raise serializers.ValidationError("an SFTP source needs a private key or a password")
        return attrs


class IngestedFileSerializer(_ServerWordsForOperators, ModelSerializer[IngestedFile]):
    """A ledger entry; `errors` only in the detail view (lists stay small); `server_reply`
    (what a server said when the download failed) is empty but for operators."""

    operator_only_fields = ("server_reply",)

    # An upload has no source: null (the schema said a string). DRF's metaclass takes declared
    # fields off the class, so this does not shadow Field.source as django-stubs' view says.
    source: serializers.SlugRelatedField[RemoteSource] = serializers.SlugRelatedField(  # type: ignore[assignment]
        slug_field="name", read_only=True, allow_null=True
    )

    class Meta:
        model = IngestedFile
        fields = [
            "id",
            "source",
            "origin",
            "name",
            "remote_path",
            "size",
            "remote_mtime",
            "sha256",
            "status",
            "duplicate_of",
            "records",
            "inserted",
            "already_present",
            "conflicts",
            "quarantined",
            "error_count",
            "message",
            "server_reply",
            "attempts",
            "discovered_at",
            "downloaded_at",
            "finished_at",
            "download_ms",
            "process_ms",
        ]
        read_only_fields = fields


class IngestedFileDetailSerializer(IngestedFileSerializer):
    """A ledger entry with its errors ({line, field, message}) and whether its content is kept."""

    content_kept = serializers.SerializerMethodField()

    class Meta(IngestedFileSerializer.Meta):
        fields = [*IngestedFileSerializer.Meta.fields, "errors", "content_kept", "content_deleted_at"]
        read_only_fields = fields

    def get_content_kept(self, row: IngestedFile) -> bool:
        return bool(row.stored_path)


class AcceptHostKey(serializers.Serializer[Any]):
    """The fingerprint the operator read and accepts."""

    fingerprint = serializers.CharField(max_length=128)


class Upload(serializers.Serializer[Any]):
    """A meter file sent by HTTP (multipart field `file`)."""

    file = serializers.FileField(allow_empty_file=False)
