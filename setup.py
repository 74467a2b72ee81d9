"""Build quantlab's optional Cython/OpenMP kernels.  Metadata lives in pyproject.toml.

* OpenMP is probed: without it the kernels build serial (``quantlab.show_config()`` says so).
* Without a compiler or Cython the install still succeeds on the pure-NumPy path, unless
  ``QUANTLAB_REQUIRE_EXT=1`` (CI sets it) makes a failed build an error.
* ``-march=native`` suits a source install, as llama.cpp does; ``QUANTLAB_NATIVE=0`` opts out.
* ``-ffp-contract=off``: GCC would otherwise fuse ``a*b+c`` into FMA once ``-march`` enables it,
  which changes ggml K-quant bytes.  No fast-math: NaN and Inf must survive.
"""
import os
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

STRICT = os.environ.get("QUANTLAB_REQUIRE_EXT", "") not in ("", "0")
NATIVE = os.environ.get("QUANTLAB_NATIVE", "1") not in ("", "0")
KERNELS = sorted(p.stem for p in Path("quantlab/kernels").glob("*.pyx"))


OMP_PROBE = "#include <omp.h>\nint main(void){return omp_get_max_threads() < 0;}\n"
PLAIN_PROBE = "int main(void){return 0;}\n"


def _compiles(flags, source=PLAIN_PROBE):
    cc = (sysconfig.get_config_var("CC") or "cc").split()
    with tempfile.TemporaryDirectory() as d:
        src = Path(d, "t.c")
        src.write_text(source)
        try:
            r = subprocess.run(cc + [str(src), "-o", str(Path(d, "t"))] + flags,
                               capture_output=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return r.returncode == 0


class BuildExt(build_ext):
    def build_extensions(self):
        openmp = _compiles(["-fopenmp"], OMP_PROBE)
        flags = ["-O3", "-ffp-contract=off", "-fno-math-errno"]
        if NATIVE and _compiles(["-march=native"]):
            flags.append("-march=native")
        omp = ["-fopenmp"] if openmp else []
        if not openmp:
            print("quantlab: OpenMP not found; kernels will run on one thread", file=sys.stderr)
        for ext in self.extensions:
            ext.extra_compile_args = flags + omp
            ext.extra_link_args = omp
        info = Path(self.build_lib if not self.inplace else ".", "quantlab/kernels/_build_info.py")
        for target in {info, Path("quantlab/kernels/_build_info.py")}:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(f"BUILD_INFO = {{'flags': {' '.join(flags + omp)!r}, "
                              f"'native': {('-march=native' in flags)!r}, 'openmp': {openmp!r}}}\n")
        super().build_extensions()

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:  # compiler missing or failing: fall back to NumPy
            if STRICT:
                raise
            print(f"quantlab: could not build {ext.name} ({exc}); using the NumPy path",
                  file=sys.stderr)


def extensions():
    try:
        import numpy
        from Cython.Build import cythonize
        from setuptools import Extension
    except ImportError as exc:
        if STRICT:
            raise
        print(f"quantlab: {exc}; building without kernels", file=sys.stderr)
        return []
    exts = [Extension(f"quantlab.kernels.{name}", [f"quantlab/kernels/{name}.pyx"],
                      include_dirs=[numpy.get_include()],
                      define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")])
            for name in KERNELS]
    exts = cythonize(exts, language_level=3, quiet=True)
    for e in exts:           # cythonize() drops optional=True: set it again
        e.optional = not STRICT
    return exts


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
