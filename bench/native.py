"""Native helpers the benchmarks build under bench/.build/ (never part of the package):

- ``sgemm``: a standalone SGEMM timer (bench/sgemm.cpp) for the two GEMMs the kernels use — Eigen's and the
  package's own tile GEMM (cpp/src/linalg/tile_gemm.hpp, compiled from the package's sources) — with the package's
  own SIMD flags and OpenMP setting, so "the SGEMM rate of the library the kernels use" is measured without adding
  anything to rnncore.
- ``symbol_build``: the package's extension built from the working tree with the same CMake flags but NOT stripped,
  so ``perf`` can name the functions (bench/profile.py).

Run as a script it prints SGEMM rates (e.g. for the README's "Compiler flags" section):
    python bench/native.py --threads 1 --flags "-O3 -march=native"
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
BUILD = BENCH / ".build"
SGEMM_SOURCE = BENCH / "sgemm.cpp"
CPP = REPO / "cpp"
#: The package sources the timer compiles in (the tile GEMM's headers, its block cache and thread setting).
SGEMM_PACKAGE_SOURCES = [CPP / "src" / "memory.cpp", CPP / "src" / "runtime.cpp"]

#: The GEMM that defines "the SGEMM rate" of a run: square, large enough to reach the library's peak on one core.
PEAK_SPEC = "nn:1024:1024:1024"


def package_flags(build_dir: Path | None = None) -> tuple[list[str], bool]:
    """The SIMD flags and OpenMP setting the kernels were compiled with: those of the importable rnncore, or of the
    CMake build in ``build_dir`` (its _build_config.py and whether its extension links libgomp)."""
    if build_dir is not None:
        config: dict = {}
        exec((build_dir / "_build_config.py").read_text(), config)
        openmp = any(b"libgomp" in so.read_bytes() for so in build_dir.glob("_core*.so"))
        return config["SIMD_FLAGS"].split(), openmp
    try:
        from rnncore import _build_config, ops
        return _build_config.SIMD_FLAGS.split(), ops.has_openmp()
    except ImportError:  # no package importable: the package's default on an AVX2 machine
        return ["-mavx2", "-mfma", "-mf16c"], True


def eigen_include() -> Path:
    """Eigen's headers from the cmeel-eigen pip package (the ones the package build uses)."""
    for entry in map(Path, sys.path):
        candidate = entry / "cmeel.prefix" / "include" / "eigen3"
        if (candidate / "Eigen" / "Core").is_file():
            return candidate
    raise RuntimeError("Eigen headers not found: pip install cmeel-eigen (the package's build requirement)")


def sgemm_flags(flags: str | None = None, build_dir: Path | None = None) -> list[str]:
    """Compiler flags for the SGEMM timer: the package's Release flags (-O3 -DNDEBUG, EIGEN_NO_DEBUG) + its SIMD flags
    + OpenMP when the package has it (see package_flags). ``flags`` (a string) replaces the optimisation/SIMD part,
    for experiments."""
    simd, openmp = package_flags(build_dir)
    base = ["-O3", "-DNDEBUG", *simd] if flags is None else flags.split()
    return ["-std=c++17", *base, "-DEIGEN_NO_DEBUG", *(["-fopenmp"] if openmp else [])]


def sgemm_binary(flags: str | None = None, build_dir: Path | None = None) -> Path:
    """Builds bench/sgemm.cpp once per (source, flags, compiler) and returns the cached binary's path."""
    cxx = os.environ.get("CXX", "g++")
    compiler = shutil.which(cxx)
    if compiler is None:
        raise RuntimeError(f"no C++ compiler ({cxx}) to build the SGEMM timer")
    cmd_flags = sgemm_flags(flags, build_dir)
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    sources = [SGEMM_SOURCE, *sorted((CPP / "src").rglob("*.hpp")), *sorted((CPP / "include").rglob("*.hpp")),
               *SGEMM_PACKAGE_SOURCES]
    key = hashlib.sha1("\n".join([*(f.read_text() for f in sources), " ".join(cmd_flags), version]).encode()
                       ).hexdigest()[:12]
    binary = BUILD / f"sgemm-{key}"
    if not binary.exists():
        BUILD.mkdir(parents=True, exist_ok=True)
        tmp = binary.with_suffix(".tmp")
        subprocess.run([compiler, *cmd_flags, f"-I{eigen_include()}", f"-I{CPP / 'src'}", f"-I{CPP / 'include'}",
                        str(SGEMM_SOURCE), *map(str, SGEMM_PACKAGE_SOURCES), "-o", str(tmp)], check=True)
        tmp.replace(binary)
        (BUILD / f"sgemm-{key}.flags").write_text(f"{version}\n{' '.join(cmd_flags)}\n")
    return binary


def run_sgemm(specs: list[str], threads: int, min_seconds: float = 0.3, flags: str | None = None,
              build_dir: Path | None = None) -> list[dict]:
    """Times each ``[tile_]OP:M:N:K[:COUNT]`` spec (see sgemm.cpp) with ``threads`` threads. The child inherits this
    process's CPU affinity (a worker pinned to one core measures one core). A tile_ spec on a build without the tile
    GEMM gives a row with gflops None."""
    out = subprocess.run([str(sgemm_binary(flags, build_dir)), str(threads), str(min_seconds), *specs], check=True,
                         capture_output=True, text=True).stdout
    rows = []
    for line in out.splitlines():
        if line.endswith(" unavailable"):
            rows.append(dict(op=line.split()[0], gflops=None))
            continue
        op, m, n, k, count, seconds, gflops = line.split()
        rows.append(dict(op=op, m=int(m), n=int(n), k=int(k), count=int(count), seconds=float(seconds),
                         gflops=float(gflops)))
    return rows


def sgemm_rates(threads: int, min_seconds: float = 0.5) -> dict[str, float]:
    """The 1024³ SGEMM rate (GFLOP/s) of each GEMM the kernels use: {"eigen": ..., "tile": ...} (no "tile" on builds
    without it)."""
    eigen, tile = run_sgemm([PEAK_SPEC, "tile_" + PEAK_SPEC], threads, min_seconds)
    rates = {"eigen": eigen["gflops"]}
    if tile["gflops"] is not None:
        rates["tile"] = tile["gflops"]
    return rates


def peak_sgemm_gflops(threads: int, min_seconds: float = 0.5) -> float:
    """The run's SGEMM rate (GFLOP/s) for ``threads`` threads: the faster of the kernels' two GEMMs (Eigen's, the
    package's tile GEMM) on a large square product."""
    return max(sgemm_rates(threads, min_seconds).values())


# ---- the unstripped extension for perf ----------------------------------------------------------------------

SYMBOLS_BUILD = BUILD / "core-symbols"  # the working tree's build; a git revision's goes to core-symbols-<sha>


def symbol_build(rev: str | None = None, quiet: bool = True) -> tuple[Path, Path]:
    """Builds the extension with the package's own CMakeLists.txt (Release, same SIMD setting) but with symbols kept
    (-g, no strip; -g does not change the generated code), from the working tree or, with ``rev``, from that git
    revision (exported with git archive, so edits in progress do not matter). Returns (a directory to put on
    PYTHONPATH whose ``rnncore`` uses that build, the CMake build directory). Incremental: ninja rebuilds what
    changed."""
    import pybind11
    source, build, pkg_root = REPO, SYMBOLS_BUILD, BUILD / "pkg"
    if rev is not None:
        sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", rev], check=True, capture_output=True,
                             text=True).stdout.strip()[:12]
        source, build, pkg_root = BUILD / f"src-{sha}", BUILD / f"core-symbols-{sha}", BUILD / f"pkg-{sha}"
        if not source.exists():
            tmp = BUILD / f"src-{sha}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            archive = subprocess.run(["git", "-C", str(REPO), "archive", sha], check=True, capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive, check=True)
            tmp.rename(source)
    build.parent.mkdir(parents=True, exist_ok=True)
    if not (build / "build.ninja").exists():
        subprocess.run(["cmake", "-S", str(source), "-B", str(build), "-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release",
                        "-DCMAKE_STRIP=/bin/true", "-DCMAKE_CXX_FLAGS=-g", f"-DPython_EXECUTABLE={sys.executable}",
                        f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
                        f"-DRNNCORE_SIMD={os.environ.get('RNNCORE_SIMD', 'auto')}"],
                       check=True, stdout=subprocess.DEVNULL if quiet else None)
    ninja = subprocess.run(["ninja", "-C", str(build)], capture_output=True, text=True)
    if ninja.returncode != 0:
        errors = [ln for ln in ninja.stdout.splitlines() if "error" in ln][:5]
        raise RuntimeError(f"building {source} failed (ninja -C {build}):\n  " + "\n  ".join(errors) +
                           "\n(a work in progress? profile a commit instead: --rev HEAD)")
    pkg = pkg_root / "rnncore"
    pkg.mkdir(parents=True, exist_ok=True)
    for src in [*sorted((source / "python" / "rnncore").glob("*.py*")), *build.glob("_core*.so"),
                build / "_build_config.py"]:
        link = pkg / src.name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(src)
    return pkg_root, build


def main() -> None:
    parser = argparse.ArgumentParser(description="SGEMM rates (Eigen's, the package's tile GEMM) with the package's "
                                     "flags (or --flags).")
    parser.add_argument("specs", nargs="*",
                        default=[PEAK_SPEC, "tile_" + PEAK_SPEC, "nn:2048:2048:2048", "tile_nn:2048:2048:2048"],
                        help="[tile_]OP:M:N:K[:COUNT], OP = nt|nn|tn (default: the 1024^3 and 2048^3 squares, "
                             "both GEMMs)")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    parser.add_argument("--flags", help='replace "-O3 -DNDEBUG <package SIMD flags>", e.g. "-O3 -march=native"')
    parser.add_argument("--seconds", type=float, default=0.5, help="minimum sampling time per spec")
    args = parser.parse_args()
    print(f"flags: {' '.join(sgemm_flags(args.flags))}")
    for threads in [int(n) for n in args.threads.split(",")]:
        for row in run_sgemm(args.specs, threads, args.seconds, args.flags):
            if row["gflops"] is None:
                print(f"threads={threads} {row['op']}: not in this build")
                continue
            print(f"threads={threads} {row['op']} M={row['m']} N={row['n']} K={row['k']} x{row['count']}: "
                  f"{row['seconds'] * 1e3:.3f} ms  {row['gflops']:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
