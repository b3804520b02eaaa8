"""`make device-wheels`: every wheel the GPU image lacks, for CPython 3.12 manylinux x86_64, with a
manifest.

  python benchmarks/device_wheels.py --out device_wheels [--python312 PATH]

Run where PyPI is reachable. The names come from device-wheels.txt, each version from
requirements-py312.txt (one source of versions). Wheels are fetched with `pip download --no-deps
--only-binary=:all:` for the GPU machine's platform (not this one's); the few packages that publish
only sources for 3.12 (device-wheels.txt's [build] section) are built here with a Python 3.12
interpreter (`pip wheel --no-deps`). The folder is emptied first, so it holds exactly one version of
each package, and gets MANIFEST.json (name, version, file, bytes, sha256, how it was obtained). The
total must stay under 56 MiB (the device tool carries 64 MiB with the repository); over that, the
command fails naming the largest wheels.

Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import hashlib
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
LIMIT_BYTES = 56 * 2**20
PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_24_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
)
TARGET = {"python": "3.12", "implementation": "cp", "platforms": PLATFORMS}


class WheelError(Exception):
    """A wheel could not be listed, fetched or built, or the folder is over its size limit."""


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: pathlib.Path) -> dict[str, str]:
    """name -> version for every `name==version` line (comments and blank lines skipped)."""
    pins = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep or not version.strip():
            raise WheelError(f"{path}:{number}: expected NAME==VERSION, got {line!r}")
        pins[canonical(name.split("[", 1)[0])] = version.strip()
    return pins


def read_wanted(path: pathlib.Path) -> tuple[list[str], list[str]]:
    """(download, build): the names in device-wheels.txt, split at its `[build]` line."""
    download, build, current = [], [], None
    current = download
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line == "[build]":
            current = build
        elif line:
            current.append(canonical(line))
    return download, build


def resolve(names: list[str], pins: dict[str, str], pins_file: pathlib.Path) -> list[str]:
    missing = [n for n in names if n not in pins]
    if missing:
        raise WheelError(
            f"{pins_file} pins no version for {missing} (device-wheels.txt names them)"
        )
    return [f"{n}=={pins[n]}" for n in names]


def run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if "is ignored" not in ln]
        raise WheelError(f"{' '.join(cmd[:6])} ... failed:\n" + "\n".join(lines[-15:]))


def find_python312(explicit: str | None) -> str:
    """A CPython 3.12 interpreter for the source builds: --python312, else python3.12 on PATH, else
    pyenv's."""
    candidates = [explicit] if explicit else []
    candidates += [shutil.which("python3.12") or ""]
    candidates += sorted(
        glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python3.12")), reverse=True
    )
    for c in candidates:
        if not c:
            continue
        proc = subprocess.run(
            [c, "-c", "import sys; print(sys.version_info[:2] == (3, 12))"],
            capture_output=True,
            text=True,
        )
        if proc.returncode == 0 and proc.stdout.strip() == "True":
            return c
    raise WheelError(
        "building the source-only packages needs a CPython 3.12 interpreter: pass --python312=PATH "
        "(none found as python3.12 on PATH or under ~/.pyenv/versions/3.12*)"
    )


def wheel_name_version(filename: str) -> tuple[str, str]:
    name, version = filename.split("-")[:2]
    return canonical(name), version


def build_folder(out: pathlib.Path, python312: str | None) -> dict:
    pins_file, wanted_file = ROOT / "requirements-py312.txt", ROOT / "device-wheels.txt"
    pins = read_pins(pins_file)
    download, build = read_wanted(wanted_file)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    platform_args = [a for p in PLATFORMS for a in ("--platform", p)]
    if download:
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
                "--python-version",
                TARGET["python"],
                "--implementation",
                TARGET["implementation"],
                *platform_args,
                "--dest",
                str(out),
                *resolve(download, pins, pins_file),
            ]
        )
    if build:
        python = find_python312(python312)
        run(
            [
                python,
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--no-deps",
                "--no-binary",
                ",".join(build),
                "--wheel-dir",
                str(out),
                *resolve(build, pins, pins_file),
            ]
        )
    wheels = []
    for path in sorted(out.glob("*.whl")):
        name, version = wheel_name_version(path.name)
        wheels.append(
            {
                "name": name,
                "version": version,
                "file": path.name,
                "bytes": path.stat().st_size,
                "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                "source": "built here from the sdist" if name in build else "PyPI wheel",
            }
        )
    got = [w["name"] for w in wheels]
    dupes = sorted({n for n in got if got.count(n) > 1})
    missing = sorted(set(download + build) - set(got))
    if dupes or missing:
        raise WheelError(
            f"{out}: expected one wheel per package; duplicated {dupes}, missing {missing}"
        )
    total = sum(w["bytes"] for w in wheels)
    manifest = {
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "target": {
            "python": TARGET["python"],
            "implementation": TARGET["implementation"],
            "platforms": list(PLATFORMS),
        },
        "versions_from": pins_file.name,
        "names_from": wanted_file.name,
        "install": "python3 -m pip install --no-index --no-deps --target SITE *.whl; "
        "PYTHONPATH=SITE",
        "total_bytes": total,
        "limit_bytes": LIMIT_BYTES,
        "wheels": wheels,
    }
    (out / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n")
    if total > LIMIT_BYTES:
        largest = ", ".join(
            f"{w['file']} {w['bytes'] / 2**20:.1f} MiB"
            for w in sorted(wheels, key=lambda w: -w["bytes"])[:3]
        )
        raise WheelError(
            f"{out}: {total / 2**20:.1f} MiB of wheels is over the {LIMIT_BYTES / 2**20:.0f} MiB "
            f"limit; largest: {largest}"
        )
    return manifest


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", default="device_wheels", help="the folder to (re)fill (default: %(default)s)"
    )
    parser.add_argument("--python312", default=None, help="a CPython 3.12 for the source builds")
    args = parser.parse_args()
    try:
        manifest = build_folder(pathlib.Path(args.out), args.python312)
    except (WheelError, OSError) as e:
        sys.exit(f"device-wheels: {e}")
    print(
        f"device-wheels: {len(manifest['wheels'])} wheels, {manifest['total_bytes'] / 2**20:.1f} "
        "MiB "
        f"(limit {LIMIT_BYTES / 2**20:.0f} MiB) in {args.out}/, manifest {args.out}/MANIFEST.json"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
