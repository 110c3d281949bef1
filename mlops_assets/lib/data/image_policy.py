"""The image policy: which formats and modes are accepted, the size limits, and how a file becomes the model's input.

Training (`validated_data`) and the service (`bento/service.py`) decide through the same `ImagePolicy` methods, and
the policy a model was trained under is stored in its package, so a bento refuses exactly what training refused as
not an image or outside these limits. Dataset-quality rules (min_contrast, min_bytes and the dataset-wide bounds of
the expectation profile) are training's alone. Which files in a dataset folder are image files at all is decided in
`dataset_files`.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import struct
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

from mlops_assets.lib.data.image_conversion import ALL_MODES, SUPPORTED_MODES, to_uint8_array
from mlops_assets.lib.data.pillow_warnings import pillow_warnings
from mlops_assets.lib.errors import InvalidImageError

# Pillow format names accepted by default: what cameras, phones, browsers and scanners write, decoded by Pillow's
# own plug-ins. Animations (GIF, WebP, APNG) and multi-page TIFFs count by their first frame.
DEFAULT_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF")
# Pillow names a JPEG that carries extra frames (as many cameras and phones write) "MPO"; its first frame is the
# photo, so it counts as JPEG.
_FORMAT_ALIASES = {"MPO": "JPEG"}
# Formats Pillow can decode at a fraction of their size (libjpeg's 1/2, 1/4 and 1/8 scales, `Image.draft`).
_DRAFTABLE = frozenset({"JPEG"})
_SMALLEST_DRAFT_SCALE = 8
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_SIDES = frozenset({5, 6, 7, 8})
# Bytes per value of each TIFF field type, to check that every tag's value lies inside the EXIF block: BYTE, ASCII,
# SHORT, LONG, RATIONAL, SBYTE, UNDEFINED, SSHORT, SLONG, SRATIONAL, FLOAT, DOUBLE, IFD, then BigTIFF's 16-18.
_EXIF_TYPE_SIZES = dict(zip((*range(1, 14), 16, 17, 18), (1, 1, 2, 4, 8, 1, 1, 2, 4, 8, 4, 8, 4, 8, 8, 8), strict=True))
R = TypeVar("R")
_IMAGE_FILE = "an image file (PNG, JPEG, WebP, BMP, TIFF or GIF)"
_EMPTY = f"cannot be decoded: The image data is empty (0 bytes); send the bytes of {_IMAGE_FILE}."
_UNRECOGNISED = f"cannot be decoded: The bytes are not a recognised image; send {_IMAGE_FILE}."


def _refusing(method: Callable[..., R]) -> Callable[..., R]:
    """Whatever fails while reading a file becomes that file's refusal with a reason, never another exception; so
    does damage Pillow only warns about (see `pillow_warnings`), which is never printed."""

    @functools.wraps(method)
    def refusing(policy: ImagePolicy, *args: object, **kwargs: object) -> R:
        with pillow_warnings() as caught:
            try:
                result = method(policy, *args, **kwargs)
            except InvalidImageError:
                raise
            except Image.DecompressionBombError as error:
                raise InvalidImageError(
                    f"cannot be decoded: Image refused: its header claims more than the limit of "
                    f"{policy.max_pixels:,} pixels (a possible decompression bomb); resize it first."
                ) from error
            except Exception as error:  # noqa: BLE001 - a damaged file may raise anything from deep in a decoder
                raise InvalidImageError(
                    f"cannot be decoded: The image is damaged or truncated and cannot be decoded: {error}"
                ) from error
        if caught and (damage := _damage(caught)):
            if isinstance(result, OpenedInput):
                result.close()
            raise InvalidImageError(
                f"cannot be decoded: Pillow found it damaged ({damage}); re-save the image with an image editor"
            )
        return result

    return refusing


def _damage(caught: list[warnings.WarningMessage]) -> str:
    """Pillow's warnings about a file as one phrase, '' when there are none.

    Each is damage Pillow stepped over (metadata it could not read, a malformed frame index); like a damaged EXIF
    block, it is a refusal. Its decompression-bomb warning is left out on purpose: the policy's own `max_pixels`,
    which is lower, decides.
    """
    messages = [
        " ".join(str(caught_warning.message).split())
        for caught_warning in caught
        if not issubclass(caught_warning.category, Image.DecompressionBombWarning)
    ]
    return "; ".join(dict.fromkeys(messages))


@dataclass(frozen=True)
class ImageHeader:
    """What a file's header says before any pixel is decoded: the format (Pillow's name), the mode, and the size
    as displayed, after the EXIF orientation (pixels)."""

    format: str
    mode: str
    width: int
    height: int


@dataclass(slots=True)
class OpenedInput:
    """A file `ImagePolicy.open_input` accepted by its header, its pixels not decoded yet.

    `decoded_pixels` is how many pixels decoding it produces (width x height as decoded: a JPEG at the reduced
    scale it will be drafted to), which is what decoding costs, whatever the file's size in bytes.
    """

    header: ImageHeader
    decoded_pixels: int
    image: Image.Image = field(repr=False)
    orientation: int
    shape: tuple[int, int, int]  # the model input's (channels, height, width)

    def close(self) -> None:
        """Closes the file without decoding it (a request refused before its turn came)."""
        self.image.close()


@dataclass(frozen=True)
class ImagePolicy:
    """What a model accepts as an image and how a file becomes its input; the same in training and serving.

    Sides are of the displayed image (after EXIF orientation), in pixels. `max_pixels` bounds the pixels actually
    decoded into memory: a JPEG is decoded at 1/2, 1/4 or 1/8 scale when the model input is small enough
    (`reducing_gap`), so a 24-megapixel photo costs a fraction of its size. An image smaller than
    1/`max_upscale` of the model input on a side is refused rather than blown up. Raises ValueError for settings
    that cannot work (an unknown format or a mode without a conversion).
    """

    allowed_formats: tuple[str, ...] = DEFAULT_FORMATS
    allowed_modes: tuple[str, ...] = ALL_MODES
    min_side: int = 4
    max_side: int = 65_535
    max_pixels: int = 40_000_000
    max_bytes: int = 20_000_000
    max_upscale: int = 4
    # JPEG draft and integer reduce keep at least this many times the model input per side before the final
    # bilinear resize (Pillow's `reducing_gap`).
    reducing_gap: int = 2
    # Grey level transparent pixels are composited over (255: white).
    alpha_background: int = 255

    def __post_init__(self) -> None:
        object.__setattr__(self, "allowed_formats", tuple(str(name).upper() for name in self.allowed_formats))
        object.__setattr__(self, "allowed_modes", tuple(str(mode) for mode in self.allowed_modes))
        Image.init()
        unknown = [name for name in self.allowed_formats if name not in Image.OPEN]
        if unknown:
            raise ValueError(
                f"image formats {unknown} are not formats Pillow can open; use names such as {DEFAULT_FORMATS}"
            )
        unconvertible = sorted(set(self.allowed_modes) - SUPPORTED_MODES)
        if unconvertible:
            raise ValueError(f"image modes {unconvertible} have no conversion; supported: {list(ALL_MODES)}")
        if not 1 <= self.min_side <= self.max_side:
            raise ValueError(f"min_side {self.min_side} and max_side {self.max_side} must satisfy 1 <= min <= max")
        for name in ("max_pixels", "max_bytes", "max_upscale", "reducing_gap"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.alpha_background <= 255:
            raise ValueError(f"alpha_background must be a grey level in 0..255, got {self.alpha_background}")

    def to_dict(self) -> dict:
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> ImagePolicy:
        """The policy as stored by `to_dict` (e.g. in a model package); unknown settings are an error."""
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown image policy settings {unknown}; known: {sorted(known)}")
        return cls(**{key: tuple(value) if isinstance(value, list) else value for key, value in data.items()})

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    @_refusing
    def header(self, source: bytes | str | os.PathLike[str]) -> ImageHeader:
        """The header of a file (a path or its bytes) the policy accepts; raises InvalidImageError with every
        reason it is refused. Reads the header and metadata only, never the pixels."""
        size = len(source) if isinstance(source, bytes) else os.path.getsize(source)
        with self._open(source, size) as image:
            header, _ = _read_header(image)
        self.check(header, size)
        return header

    def check(self, header: ImageHeader, size_bytes: int) -> None:
        """Raise InvalidImageError naming every limit a file with this header and size breaks."""
        if problems := self.problems(header, size_bytes):
            raise InvalidImageError("; ".join(problems))

    def problems(self, header: ImageHeader, size_bytes: int) -> list[str]:
        """Every limit a file with this header and size breaks, one sentence each (empty when it is accepted)."""
        problems = []
        if header.format not in self.allowed_formats:
            problems.append(self._format_problem(header.format))
        if header.mode not in self.allowed_modes:
            problems.append(
                f"image mode {header.mode} is not in the profile's allowed_modes {list(self.allowed_modes)}"
            )
        sides = f"[{self.min_side}, {self.max_side}] px"
        for name, value in (("width", header.width), ("height", header.height)):
            if not self.min_side <= value <= self.max_side:
                problems.append(f"{name} {value} px is outside {sides}")
        smallest = _smallest_decode(header)
        if smallest[0] * smallest[1] > self.max_pixels:
            problems.append(self._too_many_pixels(header, smallest))
        if size_bytes > self.max_bytes:
            problems.append(f"file size {size_bytes} bytes is above the profile's max_bytes {self.max_bytes}")
        return problems

    def model_input(self, data: bytes, height: int, width: int, channels: int) -> tuple[np.ndarray, ImageHeader]:
        """Bytes to the model's uint8 input [channels, height, width] and the file's header, or InvalidImageError
        saying why the file is refused. Every failure inside the file (pixels, EXIF block) is such a refusal."""
        opened = self.open_input(data, height, width, channels)
        return self.decode_input(opened), opened.header

    @_refusing
    def open_input(self, data: bytes, height: int, width: int, channels: int) -> OpenedInput:
        """`model_input`'s first half: the file's header read and checked, no pixel decoded yet, so a caller can
        weigh `decoded_pixels` (what `decode_input` will cost) before paying it. Raises InvalidImageError."""
        image = self._open(data, len(data))
        try:
            header, orientation = _read_header(image)
            problems = self.problems(header, len(data))
            min_width, min_height = -(-width // self.max_upscale), -(-height // self.max_upscale)
            if header.width < min_width or header.height < min_height:
                # What to send passes every limit at once: the upscaling bound and the profile's smallest side.
                least = (max(min_width, self.min_side), max(min_height, self.min_side))
                side = f"min_side {self.min_side}, " if self.min_side > min(min_width, min_height) else ""
                problems.append(
                    f"too small for the model: the image is {header.width}x{header.height} px and the model input is "
                    f"{width}x{height}; send at least {least[0]}x{least[1]} px ({side}at most {self.max_upscale}x "
                    "upscaling)"
                )
            if problems:
                raise InvalidImageError("; ".join(problems))
            if header.format in _DRAFTABLE:
                wanted = (width * self.reducing_gap, height * self.reducing_gap)
                image.draft(image.mode, wanted[::-1] if orientation in _SWAPS_SIDES else wanted)
            if image.width * image.height > self.max_pixels:
                raise InvalidImageError(self._too_many_pixels(header, image.size))
        except BaseException:
            image.close()
            raise
        return OpenedInput(header, image.width * image.height, image, orientation, (channels, height, width))

    @_refusing
    def decode_input(self, opened: OpenedInput) -> np.ndarray:
        """`model_input`'s second half: the opened file's pixels as the model's uint8 input [channels, height,
        width], or InvalidImageError; closes the file. Safe in another thread than the one that opened it."""
        channels, height, width = opened.shape
        with opened.image as image:
            image.load()
            upright = _upright(image, opened.orientation)
            return to_uint8_array(upright, height, width, channels, self.alpha_background, self.reducing_gap)

    @_refusing
    def decode(self, data: bytes) -> Image.Image:
        """Bytes to the whole image, loaded and upright (not converted, not resized), or InvalidImageError."""
        with self._open(data, len(data)) as image:
            header, orientation = _read_header(image)
            if header.format not in self.allowed_formats:
                raise InvalidImageError(self._format_problem(header.format))
            if image.width * image.height > self.max_pixels:
                raise InvalidImageError(self._too_many_pixels(header, image.size))
            image.load()
            upright = _upright(image, orientation)
            return upright if upright is not image else image.copy()

    def _format_problem(self, name: str) -> str:
        return f"image format {name} is not in the profile's allowed_formats {list(self.allowed_formats)}"

    def _too_many_pixels(self, header: ImageHeader, decoded: tuple[int, int]) -> str:
        size = f"{header.width}x{header.height}"
        if decoded[0] * decoded[1] != header.width * header.height:
            size += f" (decoded at reduced scale: {decoded[0] * decoded[1]:,} pixels)"
        return f"cannot be decoded: Image is {size}, above the limit of {self.max_pixels:,} pixels; resize it first."

    def _open(self, source: bytes | str | os.PathLike[str], size: int) -> Image.Image:
        """The file opened by one of the accepted formats' Pillow plug-ins (headers read, no pixels yet); use it as
        a context manager so the file is closed."""
        if size == 0:
            raise InvalidImageError(_EMPTY)
        try:
            return Image.open(_stream(source), formats=self.allowed_formats)
        except UnidentifiedImageError:
            identified = _identify(source)
            if identified:
                raise InvalidImageError(self._format_problem(identified)) from None
            raise InvalidImageError(_UNRECOGNISED) from None


def _stream(source: bytes | str | os.PathLike[str]) -> io.BytesIO | str:
    return io.BytesIO(source) if isinstance(source, bytes) else os.fspath(source)


def _identify(source: bytes | str | os.PathLike[str]) -> str:
    """The format of a file no accepted plug-in opens, when another Pillow plug-in recognises it; '' otherwise."""
    try:
        with Image.open(_stream(source)) as image:
            return _FORMAT_ALIASES.get(image.format or "", image.format or "")
    except Exception:  # noqa: BLE001 - unrecognised by every plug-in: not an image at all
        return ""


def _read_header(image: Image.Image) -> tuple[ImageHeader, int]:
    """The displayed header of an opened image and the EXIF orientation still to apply once it is loaded."""
    orientation = _orientation(image)
    stored = image.size
    if image.format == "TIFF":
        # Pillow reports (and loads) a TIFF already turned upright; its stored size is in the directory.
        stored = (image.tag_v2.get(256, image.width), image.tag_v2.get(257, image.height))
    width, height = (stored[1], stored[0]) if orientation in _SWAPS_SIDES else stored
    file_format = _FORMAT_ALIASES.get(image.format or "", image.format or "")
    return ImageHeader(file_format, image.mode, int(width), int(height)), orientation


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation (1-8) from what the header holds; a damaged EXIF block is a refusal."""
    block = image.info.get("exif")
    if isinstance(block, bytes) and (problem := exif_problem(block)):
        raise InvalidImageError(
            f"cannot be decoded: its EXIF metadata block is damaged ({problem}); re-save the image without it"
        )
    # The base class reads only what the header held: PNG's own getexif would decode every pixel to look for a
    # late eXIf chunk, so a late chunk is ignored here and when decoding alike.
    value = Image.Image.getexif(image).get(ExifTags.Base.Orientation, 1)
    if value == 0:
        return 1  # "unknown", written by some cameras: shown as stored
    if not isinstance(value, int) or not 1 <= value <= 8:
        raise InvalidImageError(
            f"cannot be decoded: its EXIF Orientation is {value!r}, not one of 1-8; re-save the image without it"
        )
    return value


def exif_problem(block: bytes) -> str:
    """Why an EXIF block (a TIFF structure, optionally after "Exif\\0\\0") is damaged, or '' when its first
    directory and every value it points to lie inside the block. Pillow itself skips such damage with a warning."""
    data = block[6:] if block.startswith(b"Exif\x00\x00") else block
    if len(data) < 8:
        return f"{len(data)} bytes, shorter than its 8-byte header"
    endian = {b"II": "<", b"MM": ">"}.get(data[:2])
    if endian is None:
        return "no byte-order mark"
    magic, offset = struct.unpack(endian + "HL", data[2:8])
    if magic != 42:
        return f"not a TIFF structure (magic number {magic})"
    if offset + 2 > len(data):
        return f"its directory offset {offset} lies outside the {len(data)}-byte block"
    (count,) = struct.unpack(endian + "H", data[offset : offset + 2])
    if offset + 2 + 12 * count > len(data):
        return f"its directory claims {count} entries but the block ends first"
    for index in range(count):
        start = offset + 2 + 12 * index
        tag, kind, values, pointer = struct.unpack(endian + "HHLL", data[start : start + 12])
        size = values * _EXIF_TYPE_SIZES.get(kind, 0)
        if size > 4 and pointer + size > len(data):
            return f"tag {tag} claims {size} bytes at offset {pointer}, past the end of the block"
    return ""


def _smallest_decode(header: ImageHeader) -> tuple[int, int]:
    """The fewest pixels a file can be decoded into: a JPEG at 1/8 scale, anything else at full size."""
    if header.format in _DRAFTABLE:
        scale = _SMALLEST_DRAFT_SCALE
        return -(-header.width // scale), -(-header.height // scale)
    return header.width, header.height


def _upright(image: Image.Image, orientation: int) -> Image.Image:
    if image.format == "TIFF" and ExifTags.Base.Orientation not in image.tag_v2:
        return image  # Pillow turned it upright while loading (and dropped the tag)
    method = _TRANSPOSE.get(orientation)
    return image.transpose(method) if method is not None else image


def decode_image(data: bytes, policy: ImagePolicy | None = None) -> Image.Image:
    """Decode bytes into a fully loaded, upright image, or raise InvalidImageError saying why."""
    return (policy or ImagePolicy()).decode(data)


def read_header(path: str | Path, policy: ImagePolicy) -> ImageHeader | str:
    """The file's header, or the reason the policy refuses it (for per-file reports that must not stop)."""
    try:
        return policy.header(path)
    except InvalidImageError as error:
        return str(error)
