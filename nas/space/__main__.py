"""``python -m nas.space [SPACE]``: show a search space, its size and its extreme archs."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from nas.cli import ArgumentParser, run
from nas.space import load_space


def main(argv: Sequence[str] | None = None) -> int:
    import search_spaces

    parser = ArgumentParser(prog="python -m nas.space", description=__doc__)
    parser.add_argument(
        "space",
        nargs="?",
        default=search_spaces.DEFAULT,
        help=f"shipped space ({', '.join(search_spaces.available())}) or YAML",
    )
    args = parser.parse_args(argv)
    from nas.models import count_flops, count_params

    space = load_space(args.space)
    print(f"{space.name} (hash {space.hash}): {space.size:,} archs")
    for key, values in space.choices.items():
        print(f"  {key:20s} {'fixed ' if len(values) == 1 else ''}{list(values)}")
    for label, arch in (("min", space.min_arch), ("max", space.max_arch)):
        print(
            f"{label}: {arch.short_name()}  params {count_params(arch) / 1e6:.2f}M  "
            f"FLOPs {count_flops(arch) / 1e6:.1f}M MACs"
        )
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
