"""Jane Austen's six novels, offline, from Debian's `r-cran-janeaustenr` package.

The package keeps the novels in R's lazy-load database (`data/Rdata.rdx`: a gzip-compressed
index of name -> [offset, length]; `data/Rdata.rdb`: per object a 4-byte big-endian length and a
zlib block), each novel a character vector of lines. The PyPI package `rdata` parses R's
serialisation. Five novels train; *Persuasion* is held out for prompts and reference continuations.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import shutil
import subprocess
import tempfile
import zlib
from pathlib import Path

DEB_PACKAGE = "r-cran-janeaustenr"
DATA_DIR = "usr/lib/R/site-library/janeaustenr/data"
HELD_OUT = "persuasion"
NOVELS = ("emma", "mansfieldpark", "northangerabbey", "persuasion", "prideprejudice", "sensesensibility")
_HEADING = re.compile(r"^(chapter|volume)\b.*$|^[ivxlc]+\.?$|^(finis|the end)$", re.IGNORECASE)


class CorpusError(RuntimeError):
    """The corpus cannot be prepared (package missing, unreadable data); the message says what to do."""


def download_deb(dest: Path) -> Path:
    """`apt-get download` the package into `dest` (no installation, no R)."""
    dest.mkdir(parents=True, exist_ok=True)
    found = sorted(dest.glob(f"{DEB_PACKAGE}_*.deb"))
    if found:
        return found[-1]
    if shutil.which("apt-get") is None:
        raise CorpusError(f"apt-get not found: download the Debian package {DEB_PACKAGE} by hand and pass --deb")
    out = subprocess.run(["apt-get", "download", DEB_PACKAGE], cwd=dest, capture_output=True, text=True)
    found = sorted(dest.glob(f"{DEB_PACKAGE}_*.deb"))
    if out.returncode != 0 or not found:
        raise CorpusError(f"apt-get download {DEB_PACKAGE} failed ({out.stderr.strip()[:300]}); "
                          f"run 'apt-get update' first, or pass --deb")
    return found[-1]


def read_novels(deb: Path) -> dict[str, list[str]]:
    """Every novel's lines, read from the .deb without installing it."""
    import warnings

    import rdata

    warnings.filterwarnings("ignore", message="Unknown file type", category=UserWarning)

    if not deb.is_file():
        raise CorpusError(f"{deb}: no such file; pass the downloaded {DEB_PACKAGE} .deb, or leave --deb out to "
                          f"download it with apt-get")
    with tempfile.TemporaryDirectory() as tmp:
        unpacked = subprocess.run(["dpkg-deb", "-x", str(deb), tmp], capture_output=True, text=True)
        if unpacked.returncode != 0 or not (Path(tmp) / DATA_DIR / "Rdata.rdx").is_file():
            raise CorpusError(f"{deb}: not the {DEB_PACKAGE} package ({unpacked.stderr.strip()[:200]})")
        data = Path(tmp) / DATA_DIR
        index = rdata.conversion.convert(rdata.parser.parse_data(gzip.decompress((data / "Rdata.rdx").read_bytes())))
        blob = (data / "Rdata.rdb").read_bytes()
    novels = {}
    for name in NOVELS:
        offset, length = (int(x) for x in index["variables"][name])
        block = blob[offset:offset + length]
        lines = rdata.conversion.convert(rdata.parser.parse_data(zlib.decompress(block[4:])))
        novels[name] = [str(x) for x in lines]
    return novels


def paragraphs(lines: list[str]) -> list[str]:
    """Paragraphs of a novel: lines joined between blank lines; chapter and volume headings dropped."""
    out, current = [], []
    for line in lines + [""]:
        line = line.strip()
        if line and not _HEADING.match(line):
            current.append(line)
        elif not line and current:
            out.append(" ".join(current))
            current = []
    first = next((i for i, p in enumerate(out) if len(p) >= 40), len(out))  # skip the title block
    return out[first:]


def passages(paras: list[str], min_chars: int) -> list[str]:
    """Consecutive paragraphs joined until each passage has at least `min_chars` characters."""
    out, current = [], []
    for p in paras:
        current.append(p)
        if sum(len(x) + 1 for x in current) >= min_chars:
            out.append(" ".join(current))
            current = []
    return out


def prepare(deb: Path, out_dir: Path, passage_chars: int = 1600) -> dict:
    """Write train.txt (five novels, one paragraph per line), heldout.txt and prompts.txt (held-out
    passages, one per line); returns what was written with SHA-1s, deterministically."""
    novels = read_novels(deb)
    out_dir.mkdir(parents=True, exist_ok=True)
    train = [p for name in NOVELS if name != HELD_OUT for p in paragraphs(novels[name])]
    held = paragraphs(novels[HELD_OUT])
    files = {"train.txt": "\n".join(train) + "\n", "heldout.txt": "\n".join(held) + "\n",
             "prompts.txt": "\n".join(passages(held, passage_chars)) + "\n"}
    summary = {"held_out": HELD_OUT, "package": deb.name}
    for name, text in files.items():
        (out_dir / name).write_text(text, encoding="utf-8")
        summary[name] = {"chars": len(text), "lines": text.count("\n"),
                         "sha1": hashlib.sha1(text.encode()).hexdigest()}
    return summary
