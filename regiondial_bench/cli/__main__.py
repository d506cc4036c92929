"""``python -m regiondial_bench.cli``: the ``regiondial`` command (e.g. ``torchrun -m regiondial_bench.cli``)."""

from . import main

if __name__ == "__main__":
    main(prog_name="regiondial")
