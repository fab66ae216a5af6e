"""setup.py - copies the built libkvcodec.so and the kvcodec CLI into the package at build
time, so the installed package finds them from any working directory. They are taken from
$KVCODEC_BUILD (default: ../build beside this directory; run `make` first)."""
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


class BuildWithLib(build_py):
    def run(self):
        super().run()
        build = os.environ.get("KVCODEC_BUILD") or os.path.join(HERE, "..", "build")
        so, cli = os.path.join(build, "libkvcodec.so"), os.path.join(build, "kvcodec")
        if not os.path.isfile(so):
            raise SystemExit("kvcodec setup.py: %s is missing: run `make` in the repository first "
                             "(or set KVCODEC_BUILD to the build directory)" % so)
        dst = os.path.join(self.build_lib, "kvcodec")
        shutil.copy2(so, os.path.join(dst, "libkvcodec.so"))
        if os.path.isfile(cli):
            os.makedirs(os.path.join(dst, "bin"), exist_ok=True)
            shutil.copy2(cli, os.path.join(dst, "bin", "kvcodec"))


setup(cmdclass={"build_py": BuildWithLib})
