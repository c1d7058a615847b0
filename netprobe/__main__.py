"""``python -m netprobe``: the same CLI as the ``netprobe`` command."""

from netprobe.cli import main

if __name__ == "__main__":
    main()
