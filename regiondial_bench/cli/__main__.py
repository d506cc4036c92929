"""``python -m regiondial_bench.cli``: the same as the ``regiondial`` command."""

from . import main

if __name__ == "__main__":
    main(prog_name="regiondial")
