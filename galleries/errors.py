from shitu_platform.errors import PlatformError


class InvalidBoundingBox(PlatformError):
    code = "invalid_bbox"
    http_status = 400
