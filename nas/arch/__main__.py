"""``python -m nas.arch ARCH``: show an arch (preset or YAML), its params and FLOPs."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from nas._yaml import dump_yaml
from nas.arch import PRESETS, load_arch
from nas.cli import ArgumentParser, run


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m nas.arch", description=__doc__)
    parser.add_argument("arch", nargs="?", help=f"preset ({', '.join(PRESETS)}) or arch YAML")
    parser.add_argument("--list", action="store_true", help="list the presets")
    args = parser.parse_args(argv)
    if args.list or args.arch is None:
        for name, arch in PRESETS.items():
            print(f"{name:28s} {arch.short_name()}")
        return 0
    from nas.models import count_flops, count_params

    arch = load_arch(args.arch)
    print(dump_yaml(arch.to_dict()), end="")
    print(
        f"# hash {arch.hash}  params {count_params(arch) / 1e6:.3f}M  "
        f"FLOPs {count_flops(arch) / 1e6:.1f}M MACs at {arch.resolution}px"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
