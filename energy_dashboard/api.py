"""Pieces every module's API shares."""

from rest_framework.routers import SimpleRouter


class OptionalSlashRouter(SimpleRouter):
    """The seed's paths have no trailing slash (`/sensors/{id}`); accept both forms."""

    def __init__(self) -> None:
        super().__init__()
        self.trailing_slash = "/?"
