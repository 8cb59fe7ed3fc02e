"""Request images: an upload sniffed and re-encoded by Pillow, or a collection image by id.

No byte of a request reaches a model as sent: the content is identified by Pillow from its bytes (never from the
file name or the declared content type), decoded fully with the decompression-bomb guard on
(`PIL.Image.MAX_IMAGE_PIXELS`; over it is refused, not just warned), converted to 8-bit RGB and re-created from
its raw pixels, so no metadata, palette or trailing data of the upload survives.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

from imagexplore.data.images import convert_mode


class RequestError(Exception):
    """A request the client can fix: `status` and a one-line `message` (the JSON error)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def decode_upload(data: bytes, max_bytes: int) -> Image.Image:
    """Upload bytes → a fresh 8-bit RGB image; `RequestError` 413 (too big), 415 (no image) or 400 (broken)."""
    if len(data) > max_bytes:
        raise RequestError(413, f"upload is {len(data)} bytes; the limit is {max_bytes} bytes")
    if not data:
        raise RequestError(400, "the upload is empty")
    try:
        with warnings.catch_warnings():
            # over MAX_IMAGE_PIXELS Pillow only warns; refuse it as it refuses twice the limit
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            warnings.filterwarnings("ignore", category=UserWarning, module="PIL")
            with Image.open(io.BytesIO(data)) as opened:
                opened.load()
                try:
                    img = ImageOps.exif_transpose(opened) or opened
                except Exception:  # a broken EXIF block must not make a good image unreadable
                    img = opened
                rgb = convert_mode(img, "RGB")
                if rgb.width == 0 or rgb.height == 0:
                    raise RequestError(400, "the image is empty (0 pixels)")
                return Image.frombytes("RGB", rgb.size, rgb.tobytes())  # re-created from its pixels alone
    except RequestError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise RequestError(
            413, f"image has too many pixels (limit {Image.MAX_IMAGE_PIXELS}): {_line(exc)}"
        ) from None
    except UnidentifiedImageError:
        raise RequestError(
            415, "the upload is not an image Pillow can read (content sniffed, not the name)"
        ) from None
    except MemoryError:
        raise RequestError(413, "the image is too large to decode") from None
    except Exception as exc:  # Pillow's plugins raise many types for broken files
        raise RequestError(400, f"cannot decode the image: {_line(exc)}") from None


def _line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]
