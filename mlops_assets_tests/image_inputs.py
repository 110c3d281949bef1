"""Image files of every kind the image policy meets, generated with Pillow (no binary fixtures in the repository)."""

import io
import struct
from pathlib import Path

import numpy as np
from PIL import Image

ORIENTATION = 0x0112


def encode(image: Image.Image, file_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=file_format, **options)
    return buffer.getvalue()


def noise(seed: int, shape: tuple[int, ...], base: int = 128, spread: int = 60) -> np.ndarray:
    """uint8 pixels around `base`: two datasets' labels differ by their base brightness."""
    values = base + np.random.default_rng(seed).integers(-spread, spread, shape)
    return np.clip(values, 0, 255).astype(np.uint8)


def exif_orientation(value: int) -> Image.Exif:
    exif = Image.Exif()
    exif[ORIENTATION] = value
    return exif


def sideways_jpeg(pixels: np.ndarray, orientation: int = 6, quality: int = 90) -> bytes:
    """A JPEG storing `pixels` as they are, tagged to be displayed rotated (6: 90 degrees clockwise)."""
    return encode(Image.fromarray(pixels), "JPEG", exif=exif_orientation(orientation), quality=quality)


def animated_gif(frames: list[np.ndarray]) -> bytes:
    first, *rest = (Image.fromarray(frame) for frame in frames)
    return encode(first, "GIF", save_all=True, append_images=rest, duration=100, loop=0)


def mpo(frames: list[np.ndarray]) -> bytes:
    """A JPEG with extra frames, as cameras write them (Pillow calls it MPO)."""
    first, *rest = (Image.fromarray(frame) for frame in frames)
    return encode(first, "MPO", save_all=True, append_images=rest, quality=95)


def cmyk_jpeg(pixels: np.ndarray) -> bytes:
    return encode(Image.fromarray(pixels).convert("CMYK"), "JPEG", quality=95)


def sixteen_bit_png(values: np.ndarray) -> bytes:
    return encode(Image.fromarray(values.astype(np.uint16)), "PNG")


def palette_png_with_transparency(indices: np.ndarray) -> bytes:
    """A palette PNG whose entry 0 is transparent (its colour, black, must not show)."""
    image = Image.frombytes("P", indices.shape[::-1], indices.astype(np.uint8).tobytes())
    image.putpalette([level for index in range(256) for level in (index,) * 3])
    return encode(image, "PNG", transparency=0)


def jpeg_with_exif_block(pixels: np.ndarray, block: bytes) -> bytes:
    """A JPEG whose APP1 segment carries `block` verbatim as its EXIF data (for damaged blocks)."""
    return encode(Image.fromarray(pixels), "JPEG", exif=block, quality=90)


def truncated_exif_block() -> bytes:
    """EXIF whose first directory claims 5 entries but ends after the first."""
    entry = struct.pack("<HHLL", ORIENTATION, 3, 1, 6)
    return b"Exif\x00\x00" + b"II*\x00" + struct.pack("<L", 8) + struct.pack("<H", 5) + entry


def exif_block_pointing_outside() -> bytes:
    """EXIF with a Make tag whose 40-byte value lies past the end of the block."""
    entry = struct.pack("<HHLL", 0x010F, 2, 40, 4_000)
    return b"Exif\x00\x00" + b"II*\x00" + struct.pack("<L", 8) + struct.pack("<H", 1) + entry + b"\x00" * 4


def exif_block_with_bad_orientation(value: int = 9) -> bytes:
    entry = struct.pack("<HHLL", ORIENTATION, 3, 1, value)
    return b"Exif\x00\x00" + b"II*\x00" + struct.pack("<L", 8) + struct.pack("<H", 1) + entry + b"\x00" * 4


def exif_block_without_next_pointer() -> bytes:
    """EXIF whose one-entry directory ends without the 4-byte offset of the next one; Pillow only warns ("Corrupt
    EXIF data") and reads on."""
    entry = struct.pack("<HHLL", ORIENTATION, 3, 1, 1)
    return b"Exif\x00\x00" + b"II*\x00" + struct.pack("<L", 8) + struct.pack("<H", 1) + entry


def tiff_with_tag_past_the_end(pixels: np.ndarray) -> bytes:
    """A TIFF whose ImageDescription tag claims 100,000 bytes, past the end of the file; Pillow only warns ("Tag data
    larger than file") and skips the tag."""
    from PIL import TiffImagePlugin

    directory = TiffImagePlugin.ImageFileDirectory_v2()
    directory[270] = "a description long enough to be stored outside its entry"
    data = bytearray(encode(Image.fromarray(pixels), "TIFF", tiffinfo=directory))
    (offset,) = struct.unpack("<L", data[4:8])
    (count,) = struct.unpack("<H", data[offset : offset + 2])
    for start in range(offset + 2, offset + 2 + 12 * count, 12):
        if struct.unpack("<H", data[start : start + 2])[0] == 270:
            data[start + 4 : start + 8] = struct.pack("<L", 100_000)
            return bytes(data)
    raise AssertionError("Pillow wrote no ImageDescription tag")


def jpeg_with_malformed_mpo_index(pixels: np.ndarray) -> bytes:
    """A JPEG whose multi-picture index (an APP2 "MPF" segment, as cameras write) is cut short; Pillow only warns
    ("malformed MPO file") and reads it as a plain JPEG."""
    payload = b"MPF\x00" + b"MM\x00*\x00\x00\x00\x08" + b"\x00\x03" + b"\xff" * 20
    segment = b"\xff\xe2" + struct.pack(">H", len(payload) + 2) + payload
    data = encode(Image.fromarray(pixels), "JPEG", quality=90)
    return data[:2] + segment + data[2:]


def large_photo(seed: int, base: int = 128, width: int = 6000, height: int = 4000) -> bytes:
    """A camera-sized JPEG (24 megapixels by default): smooth light and shade plus fine noise, so it keeps its
    contrast when shrunk to a small model input, as a photo does."""
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi, 2)
    row = (40 * np.sin(np.arange(width) / (width / 7) + phase[0])).astype(np.int16)
    column = (30 * np.cos(np.arange(height) / (height / 5) + phase[1])).astype(np.int16)
    grey = np.clip(base + row[None, :] + column[:, None], 0, 240).astype(np.uint8)
    grey += rng.integers(0, 15, (1, width), dtype=np.uint8)
    pixels = np.stack([grey, grey, grey // 2 + 60], axis=-1)
    return encode(Image.fromarray(pixels), "JPEG", quality=85)


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def two_label_dataset(root: Path, count: int = 30, size: tuple[int, int] = (32, 32)) -> Path:
    """`dark/` and `bright/` folders of `count` RGB PNGs each (the cases' shape): 30 per label by default."""
    height, width = size
    for label, base in (("dark", 60), ("bright", 190)):
        for index in range(count):
            pixels = noise(index * 7 + base, (height, width, 3), base=base, spread=40)
            write(root / label / f"{label}_{index:03d}.png", encode(Image.fromarray(pixels), "PNG"))
    return root
