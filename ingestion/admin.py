"""Admin for operators: remote sources (scan now, accept an offered SFTP host key) and the
file ledger (read-only, with re-processing)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from ingestion import services
from ingestion.models import MAX_KEY_CHARS, IngestedFile, RemoteSource


class RemoteSourceForm(forms.ModelForm):
    """Secrets are typed in but never shown back; left empty, the stored one is kept."""

    password = forms.CharField(widget=forms.PasswordInput(render_value=False), required=False, max_length=256)
    private_key = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}), required=False, max_length=MAX_KEY_CHARS
    )

    class Meta:
        model = RemoteSource
        exclude: list[str] = []  # every editable field; secrets handled below

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.initial["private_key"] = ""

    def clean(self) -> dict[str, Any]:
        # As in the API: the settings' source is changed through its FTP_SA4CPS_* settings.
        if self.instance.pk and self.instance.from_settings:
            raise forms.ValidationError(
                "this source is defined by the FTP_SA4CPS_* settings; change them instead"
            )
        cleaned = super().clean()
        assert cleaned is not None  # ModelForm.clean returns its cleaned_data
        return cleaned

    def clean_password(self) -> str:
        return self.cleaned_data["password"] or (self.instance.password if self.instance.pk else "")

    def clean_private_key(self) -> str:
        return self.cleaned_data["private_key"] or (self.instance.private_key if self.instance.pk else "")


@admin.register(RemoteSource)
class RemoteSourceAdmin(admin.ModelAdmin):
    """Sources with their last scan; actions scan now and pin the offered host key."""

    form = RemoteSourceForm
    list_display = ["name", "protocol", "host", "enabled", "last_scan_at", "last_scan_ok", "last_error_kind"]
    list_filter = ["protocol", "enabled", "last_scan_ok"]
    search_fields = ["name", "host"]
    readonly_fields = RemoteSource.STATE_FIELDS
    actions = ["scan_now", "accept_offered_host_key"]

    @admin.action(description="Scan now (files processed here)")
    def scan_now(self, request: HttpRequest, queryset: QuerySet[RemoteSource]) -> None:
        for source in queryset:
            processed: list[int] = []
            result = services.source_scan(source=source, on_file=processed.append)
            for file_id in processed:
                services.file_run(file_id=file_id)
            if result.ok:
                self.message_user(
                    request,
                    f"{source.name}: {result.listed} listed, {len(result.queued)} new file(s) taken, "
                    f"{len(result.growing)} still growing",
                )
            else:
                self.message_user(request, f"{source.name}: {result.error or result.skipped}", messages.ERROR)

    @admin.action(description="Accept the SFTP host key the server offered")
    def accept_offered_host_key(self, request: HttpRequest, queryset: QuerySet[RemoteSource]) -> None:
        for source in queryset:
            try:
                services.source_accept_host_key(source=source, fingerprint=source.offered_fingerprint)
            except services.IngestionError as exc:
                self.message_user(request, f"{source.name}: {exc}", messages.ERROR)
            else:
                self.message_user(request, f"{source.name}: host key pinned")


@admin.register(IngestedFile)
class IngestedFileAdmin(admin.ModelAdmin):
    """The ledger, read-only; re-process kept files after a fix."""

    list_display = [
        "id",
        "name",
        "source",
        "origin",
        "status",
        "records",
        "inserted",
        "error_count",
        "discovered_at",
    ]
    list_filter = ["status", "origin", "source"]
    search_fields = ["name", "sha256", "remote_path"]
    list_select_related = ["source"]
    date_hierarchy = "discovered_at"
    actions = ["reprocess"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Re-process the kept file")
    def reprocess(self, request: HttpRequest, queryset: QuerySet[IngestedFile]) -> None:
        for row in queryset:
            try:
                done = services.file_reprocess(file=row)
            except services.IngestionError as exc:
                self.message_user(request, f"{row.name}: {exc}", messages.ERROR)
            else:
                level = messages.ERROR if done.status in ("rejected", "failed") else messages.SUCCESS
                self.message_user(request, f"{row.name}: {done.status}: {done.message}", level)


# MQTT brokers and mappings (issue 15) register their own admin.
from ingestion.mqtt import admin as mqtt_admin  # noqa: E402, F401
