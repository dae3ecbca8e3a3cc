"""pip install --no-build-isolation .  builds bnorm's Python package with the project's CMake.

A small setuptools shim (scikit-build is not packaged in Debian 12): build_ext configures and
builds the targets _bnorm (and _torch_ops when torch's C++ API is found for this interpreter) in
build/python-<tag>, then copies the modules next to python/bnorm/*.py. Options for CMake can be
passed in BNORM_CMAKE_ARGS (e.g. "-DBNORM_WITH_TORCH_OPS=OFF").
"""

import os
import shlex
import shutil
import subprocess
import sys
import sysconfig

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))


class CMakeExtension(Extension):
    def __init__(self, name, optional=False):
        super().__init__(name, sources=[])
        self.optional_module = optional


class CMakeBuild(build_ext):
    def run(self):
        tag = sysconfig.get_config_var("SOABI") or "py3"
        build_dir = os.path.join(ROOT, "build", f"python-{tag}")
        configure = [
            "cmake", "-S", ROOT, "-B", build_dir, "-DCMAKE_BUILD_TYPE=Release",
            f"-DBNORM_PYTHON_EXECUTABLE={sys.executable}", "-DBNORM_WITH_PYTHON=ON",
            "-DBNORM_BUILD_TESTS=OFF", "-DBNORM_BUILD_BENCH=OFF", "-DBNORM_BUILD_TOOLS=OFF",
            "-DBNORM_INSTALL=OFF",
        ]
        if shutil.which("ninja"):
            configure += ["-G", "Ninja"]
        configure += shlex.split(os.environ.get("BNORM_CMAKE_ARGS", ""))
        subprocess.check_call(configure)
        subprocess.check_call(["cmake", "--build", build_dir, "--target", "bnorm_python_modules",
                               "-j", str(os.cpu_count() or 2)])
        self.built_dir = os.path.join(build_dir, "python", "bnorm")
        super().run()

    def build_extension(self, ext):
        suffix = sysconfig.get_config_var("EXT_SUFFIX")
        short = ext.name.split(".")[-1]
        source = os.path.join(self.built_dir, short + suffix)
        if not os.path.exists(source):
            if ext.optional_module:
                print(f"bnorm: {short} was not built (torch's C++ API not found); "
                      "bnorm.torch will use its NumPy fallback")
                return
            raise RuntimeError(f"CMake did not build {source}")
        target = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(source, target)


setup(
    name="bnorm",
    version="0.1.0",
    description="Exact, fast batch normalization (C++) for NumPy and PyTorch",
    packages=["bnorm"],
    package_dir={"": "python"},
    ext_modules=[CMakeExtension("bnorm._bnorm"),
                 CMakeExtension("bnorm._torch_ops", optional=True)],
    cmdclass={"build_ext": CMakeBuild},
    python_requires=">=3.9",
    install_requires=["numpy"],
    zip_safe=False,
)
