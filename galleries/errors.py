from shitu_platform.errors import PlatformError


class InvalidBoundingBox(PlatformError):
    code = "invalid_bbox"
    http_status = 400


class ReferenceImageNotReady(PlatformError):
    """Its box can be corrected once it is embedded: a pending image is about to be, a failed one cannot be read."""

    code = "image_not_ready"
    http_status = 409
