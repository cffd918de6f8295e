"""The wheels a GPU machine without network needs: the project's dependencies its image lacks.

The GPU image (nvidia-h200, Python 3.12, x86-64) has torch, lightning, torchmetrics, tokenizers, sacrebleu,
matplotlib, tensorboard, pyarrow and many more (``DEVICE_PACKAGES``), but not Hydra, W&B, datasets or the
sweep plugins. Starting from this project's requirements, every package the image lacks is followed into its
own requirements (a package the image has brings its requirements along there), at the version installed here,
where the test suite runs.

    python benchmarks/gpu_wheels.py fill     # where PyPI is reachable: download them into .whl/
    python benchmarks/gpu_wheels.py check    # the folder holds one wheel of each, for CPython 3.12 on x86-64
    python benchmarks/gpu_wheels.py list     # name==version per line

``.whl/`` is git-ignored: it travels to the GPU machine as a carried path, and ``benchmarks/gpu_check.sh``
installs it there with ``pip install --no-index --no-deps --target``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging import tags
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "seq2seq-lab"
# The target: the GPU image's python3 (see the device notes, KINDS.md).
PYTHON = "3.12"
MARKER_ENV = {
    "python_version": PYTHON,
    "python_full_version": f"{PYTHON}.3",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "extra": "",
}
PLATFORMS = [
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_24_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
]
# The GPU image's Python packages (KINDS.md, read on 2026-11-17).
_DEVICE_PACKAGE_NAMES = """
    absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
    charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core
    cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock
    flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx
    huggingface-hub humanize hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin
    jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax
    llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack
    multidict multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro
    nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft
    nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 nvidia-ml-py
    nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript
    opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec
    patsy peft pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11
    py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock
    pytest-timeout pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors
    scikit-build-core scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools
    shellingham simplejson
    six sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl
    tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision
    tqdm transformers treescope triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig
    werkzeug wheel wrapt xarray xxhash yarl zipp
"""
DEVICE_PACKAGES = frozenset(canonicalize_name(name) for name in _DEVICE_PACKAGE_NAMES.split())


def _applies(requirement: Requirement) -> bool:
    return requirement.marker is None or requirement.marker.evaluate(MARKER_ENV)


def missing_packages() -> dict[str, str]:
    """``{name: version installed here}`` of every package the project needs that the GPU image lacks."""
    found: dict[str, str] = {}
    todo = [r for r in map(Requirement, metadata.requires(PROJECT) or []) if _applies(r)]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in DEVICE_PACKAGES or name in found:
            continue
        try:
            distribution = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            sys.exit(f"error: {requirement.name} (required by the project) is not installed here: pip install -e .")
        found[name] = distribution.version
        todo += [r for r in map(Requirement, distribution.requires or []) if _applies(r)]
    return dict(sorted(found.items()))


def _target_tags() -> frozenset[tags.Tag]:
    """The wheel tags CPython 3.12 on x86-64 Linux (glibc up to 2.39) installs."""
    version = tuple(int(part) for part in PYTHON.split("."))
    platforms = [f"manylinux_2_{minor}_x86_64" for minor in range(39, 4, -1)]
    platforms += ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]
    cpython = tags.cpython_tags(version, platforms=platforms)
    return frozenset([*cpython, *tags.compatible_tags(version, f"cp{version[0]}{version[1]}", platforms)])


def _runs_on_target(wheel: Path) -> bool:
    """Whether ``wheel`` installs on the GPU image's Python."""
    return bool(parse_wheel_filename(wheel.name)[3] & _target_tags())


def check(folder: Path, packages: dict[str, str]) -> list[str]:
    """The problems of ``folder`` as a wheel source for ``packages``: missing, extra versions, wrong platform."""
    wheels: dict[str, list[tuple[str, Path]]] = {}
    for wheel in sorted(folder.glob("*.whl")):
        name, version, _, _ = parse_wheel_filename(wheel.name)
        wheels.setdefault(canonicalize_name(name), []).append((str(version), wheel))
    problems = []
    for name, version in packages.items():
        have = wheels.get(name, [])
        if not any(v == version for v, _ in have):
            problems.append(
                f"{name}=={version}: no wheel" + (f" (has {', '.join(v for v, _ in have)})" if have else "")
            )
        problems += [f"{w.name}: not for CPython {PYTHON} on x86-64 Linux" for _, w in have if not _runs_on_target(w)]
    for name, have in wheels.items():
        if name not in packages or len(have) > 1:
            problems += [
                f"{w.name}: not needed (one version of each, only what the image lacks)"
                for v, w in have
                if name not in packages or v != packages[name]
            ]
    return problems


def fill(folder: Path, packages: dict[str, str]) -> None:
    """Download one wheel per package into ``folder`` (no dependencies: `missing_packages` lists them all)."""
    folder.mkdir(parents=True, exist_ok=True)
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    for name, version in packages.items():
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"]
        command += ["--python-version", PYTHON, "--implementation", "cp", *platforms, "-d", str(folder)]
        if subprocess.run([*command, f"{name}=={version}"]).returncode != 0:
            # no wheel on the index (antlr4-python3-runtime 4.9.3, Hydra's parser, is a source release): build one;
            # `check` rejects it unless it is pure Python
            print(f"{name}=={version}: no wheel on the index, building one from the source release", file=sys.stderr)
            build = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(folder)]
            subprocess.run([*build, f"{name}=={version}"], check=True)
    for problem in check(folder, packages):  # older versions left from an earlier fill
        wheel = folder / problem.split(":")[0]
        if problem.endswith("not needed (one version of each, only what the image lacks)") and wheel.exists():
            wheel.unlink()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["fill", "check", "list"])
    parser.add_argument("--dir", type=Path, default=ROOT / ".whl", help="the wheel folder (default: .whl/)")
    args = parser.parse_args(argv)
    packages = missing_packages()
    if args.action == "list":
        print("\n".join(f"{name}=={version}" for name, version in packages.items()))
        return 0
    if args.action == "fill":
        fill(args.dir, packages)
    problems = check(args.dir, packages) if args.dir.is_dir() else [f"{args.dir}: no such folder"]
    for problem in problems:
        print(f"error: wheel folder {args.dir}: {problem}", file=sys.stderr)
    if problems:
        print(f"fill it where PyPI is reachable: python {Path(__file__).relative_to(ROOT)} fill", file=sys.stderr)
        return 1
    size = sum(w.stat().st_size for w in args.dir.glob("*.whl"))
    print(f"wheel folder {args.dir}: {len(packages)} wheels, {size / 2**20:.1f} MiB, complete")
    return 0


if __name__ == "__main__":
    sys.exit(main())
