"""`cnnlab survey`: what is in a folder of photos, read from file headers only.

Pillow's `Image.open` parses the header and stops, so sizes, modes and formats of thousands
of photos come back in a second or two without decoding a pixel. Files are opened through
photo_file's checks (no FIFO, device or looping link is ever opened), and a JPEG too small for
the size its header claims is reported as truncated; pixel data cut short further on is not
detected here (that needs a decode), `prepare` finds it when it decodes.

Paths in the report are printable (photo_file.printable_path): undecodable bytes of a file
name appear as \\xNN, so the report prints and serialises whatever the names are.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from cnnlab.data.decode import BadImage, open_checked
from cnnlab.data.labels import find_labelled_files
from cnnlab.data.photo_file import open_photo, photo_size, printable_path


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
    for relative, label in zip(found.paths, found.labels):
        path = Path(found.root) / relative
        try:
            total_bytes += photo_size(path)  # type and size checked before anything is opened
            with open_photo(path) as handle, open_checked(handle) as image:
                width, height = image.size
                shapes[(width, height)] += 1
                modes[image.mode] += 1
                formats[image.format or "unknown"] += 1
                if image.format and path.suffix.lower() in (".jpg", ".jpeg") and image.format != "JPEG":
                    mismatched.append({"path": printable_path(relative), "format": image.format})
        except BadImage as reason:
            unreadable.append({"path": printable_path(relative), "reason": str(reason)})
            continue
        except OSError as error:
            unreadable.append({"path": printable_path(relative), "reason": f"cannot read file ({error.strerror or error})"})
            continue
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
