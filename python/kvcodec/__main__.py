"""`python -m kvcodec CMD ...` runs the kvcodec command-line tool with the same arguments."""
import os
import sys

from .evaluate import cli_path


def main() -> None:
    exe = cli_path()
    try:
        os.execvp(exe, [exe, *sys.argv[1:]])
    except OSError as e:
        sys.stderr.write("python -m kvcodec: cannot run %s: %s (set KVCODEC_CLI)\n" % (exe, e.strerror))
        sys.exit(127)


if __name__ == "__main__":
    main()
