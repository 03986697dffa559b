"""`cnnlab download`: fetch, verify and safely extract the public Dogs vs. Cats archive.

The same rules as every cnnlab.cli module: the library does the work
(cnnlab.data.download), user errors are UserError (one line, exit status 2), never a traceback.
"""

from __future__ import annotations

from pathlib import Path

KNOWN_ISSUE = ("note: PetImages holds a few corrupt JPEGs and non-JPEG files (e.g. Thumbs.db); "
               "prepare skips each one it cannot decode and lists it, so nothing needs deleting by hand.")


def command_download(arguments) -> int:
    from cnnlab.data.download import DEFAULT_URL, DownloadOptions, download

    options = DownloadOptions(dest=Path(arguments.dest), url=arguments.url or DEFAULT_URL, sha256=arguments.sha256,
                              timeout=arguments.timeout)
    result = download(options)
    print(result.summary())
    print(KNOWN_ISSUE)
    print(f"next: {result.next_command()}")
    return 0


def register(commands) -> None:
    """Add `download` to the CLI's subcommands."""
    download = commands.add_parser(
        "download", help="fetch the public Dogs vs. Cats archive (PetImages), verify it and extract it safely",
        description="Download Microsoft's PetImages zip (the archive Keras' image classification example uses, "
                    "786 MB, 12,500 photos per class) into DEST with a progress bar, resuming a cut download "
                    "(HTTP Range), checking its SHA-256, and extracting it safely (no paths outside DEST, no "
                    "links, zip-bomb limits, atomic moves). Then run the printed `cnnlab prepare` command. "
                    "Offline it stops at once: use photos already on disk with `prepare --data FOLDER`.",
        epilog="exit status: 0 when the photos are in place; 2 when the download, the checksum or the "
               "extraction fails, or DIR cannot be a folder (one line says why and which file to delete, if any; "
               "a rerun resumes a cut download and removes what a killed run left).")
    download.add_argument("--dest", default="data", metavar="DIR",
                          help="folder to download and extract into (default: data; the photos land in DIR/PetImages)")
    download.add_argument("--url", metavar="URL", help="archive to fetch (default: Microsoft's PetImages zip)")
    download.add_argument("--sha256", metavar="HEX",
                          help="require this SHA-256 of the archive (default: the known digest of the default URL; "
                               "for other URLs the digest is recorded beside the archive and checked on later runs)")
    download.add_argument("--timeout", type=float, default=15.0, metavar="SECONDS",
                          help="give up when connecting or a read stalls this long (default: 15)")
    download.set_defaults(handler=command_download)
