"""`cnnlab survey`: what is in a folder of photos, read from file headers only.

Each file's first bytes are read once (photo_file.read_head: no FIFO, device or looping link is
ever opened). A plain JPEG's header is read from them by jpeg_header, without Pillow; any other
file is opened by Pillow's `Image.open`, which parses the header and stops. Either way no pixel
is decoded, and the 5,972 shared photos are surveyed in well under a second
(benchmarks/cold_start.py). A JPEG too small for the size its header claims is reported as
truncated; pixel data cut short further on is not detected here (that needs a decode),
`prepare` finds it when it decodes.

Paths in the report are printable (photo_file.printable_path): undecodable bytes of a file
name appear as \\xNN, so the report prints and serialises whatever the names are.
"""

from __future__ import annotations

import os
from collections import Counter

from cnnlab.data.jpeg_header import read_plain_jpeg
from cnnlab.data.labels import find_labelled_files
from cnnlab.data.photo_file import BadImage, open_photo, photo_size, printable_path, read_head
from cnnlab.data.truncation import TRUNCATED

# Enough for the header of any plain JPEG seen (the shared photos' end within 402 bytes, one with
# an sRGB profile within 4 KB); a longer header is read by Pillow from the file.
HEAD_BYTES = 16 * 1024
# decode.MAX_PIXELS, repeated so that a survey of plain JPEGs never imports Pillow; a test checks.
MAX_PIXELS = 40_000_000


def header_facts(path: str) -> tuple[int, int, str, str | None]:
    """(width, height, mode, format) of one photo from its header; BadImage or OSError if unusable."""
    head, size = read_head(path, HEAD_BYTES)
    header = read_plain_jpeg(head, MAX_PIXELS)
    if header is not None:
        # What decode.open_checked concludes for the same file: every plain frame is Huffman-coded.
        if size < header.minimum_bytes():
            raise BadImage(TRUNCATED)
        return header.width, header.height, header.mode, "JPEG"
    from cnnlab.data.decode import open_checked  # Pillow: only for files the fast path leaves

    with open_photo(path) as handle, open_checked(handle) as image:
        return *image.size, image.mode, image.format


def survey(root: str | os.PathLike, layout: str = "auto", top: int = 10) -> dict:
    """Counts per class, top shapes (width x height), modes, formats and unreadable files."""
    found = find_labelled_files(root, layout)
    shapes: Counter = Counter()
    modes: Counter = Counter()
    formats: Counter = Counter()
    unreadable = list(found.ignored)
    mismatched: list[dict] = []  # e.g. PNGs saved as .jpg: usable, but worth knowing
    readable_per_class: Counter = Counter()
    widths, heights, total_bytes = [], [], 0
    root = os.fspath(found.root)
    for relative, label in zip(found.paths, found.labels):
        path = os.path.join(root, relative)
        try:
            total_bytes += photo_size(path)  # a regular file's bytes count, even when it is no photo
            width, height, mode, image_format = header_facts(path)
        except BadImage as reason:
            unreadable.append({"path": printable_path(relative), "reason": str(reason)})
            continue
        except OSError as error:
            unreadable.append({"path": printable_path(relative), "reason": f"cannot read file ({error.strerror or error})"})
            continue
        shapes[(width, height)] += 1
        modes[mode] += 1
        formats[image_format or "unknown"] += 1
        if image_format and relative.lower().endswith((".jpg", ".jpeg")) and image_format != "JPEG":
            mismatched.append({"path": printable_path(relative), "format": image_format})
        readable_per_class[label] += 1
        widths.append(width)
        heights.append(height)
    return {
        "root": printable_path(found.root),
        "layout": found.layout,
        "images": len(found.paths),
        "per_class": found.counts(),
        "readable_per_class": dict(sorted(readable_per_class.items())),
        "top_shapes": [
            {"width": width, "height": height, "count": count} for (width, height), count in shapes.most_common(top)
        ],
        "distinct_shapes": len(shapes),
        "width_range": [min(widths), max(widths)] if widths else None,
        "height_range": [min(heights), max(heights)] if heights else None,
        "modes": dict(modes.most_common()),
        "formats": dict(formats.most_common()),
        "format_mismatches": mismatched,
        "total_megabytes": round(total_bytes / 1e6, 1),
        "unreadable": unreadable,
    }


def format_survey(report: dict) -> str:
    """The survey as a short, readable text block."""
    lines = [f"{report['root']}: {report['images']} images ({report['layout']} layout, {report['total_megabytes']} MB)"]
    lines.append("per class: " + ", ".join(f"{name} {count}" for name, count in report["per_class"].items()))
    lines.append(f"top shapes (width x height) of {report['distinct_shapes']} distinct:")
    for shape in report["top_shapes"]:
        lines.append(f"  {shape['width']}x{shape['height']}: {shape['count']}")
    if report["width_range"]:
        lines.append(
            f"widths {report['width_range'][0]}-{report['width_range'][1]}, "
            f"heights {report['height_range'][0]}-{report['height_range'][1]}"
        )
    lines.append("modes: " + ", ".join(f"{mode} {count}" for mode, count in report["modes"].items()))
    lines.append("formats: " + ", ".join(f"{name} {count}" for name, count in report["formats"].items()))
    if report["format_mismatches"]:
        lines.append(f"files whose extension does not match their format: {len(report['format_mismatches'])}")
    lines.append(f"unreadable: {len(report['unreadable'])}")
    for item in report["unreadable"]:
        lines.append(f"  {item['path']}: {item['reason']}")
    return "\n".join(lines)
