"""The `bsr` command: one verb per pipeline stage. Each verb is a thin call into the module of the same name."""
from __future__ import annotations

import argparse
import json
import sys

from bsr import BsrError, __version__


def cmd_degrade(args):
    from bsr.degrade import degrade_dir

    n = degrade_dir(args.hr, args.out, args.scale, args.kind)
    print(f"degraded {n} images ({args.kind} x{args.scale}) into {args.out}")


def cmd_eval_bicubic(args):
    from bsr.evaluate import eval_bicubic

    print(json.dumps(eval_bicubic(args.hr, args.scale, args.kind, args.out, args.space)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bsr", description=__doc__)
    parser.add_argument("--version", action="version", version=f"bsr {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name, func, help):
        p = verbs.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        return p

    def degradation_args(p):
        p.add_argument("--hr", required=True, help="directory of HR PNG/BMP images")
        p.add_argument("--scale", required=True, type=int, choices=range(2, 9), metavar="S", help="integer scale")
        p.add_argument("--kind", required=True, choices=["BI", "BD"], help="BI: bicubic down; BD: blur, subsample")

    p = verb("degrade", cmd_degrade, "write the LR image of every HR image (same file stems, PNG)")
    degradation_args(p)
    p.add_argument("--out", required=True, help="output directory (replaced atomically)")

    p = verb("eval-bicubic", cmd_eval_bicubic, "score the bicubic baseline of a test set")
    degradation_args(p)
    p.add_argument("--out", required=True, help="summary JSON; the per-image CSV is written beside it")
    p.add_argument("--space", default="y", choices=["y", "rgb"], help="PSNR/SSIM on BT.601 Y (default) or RGB")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except BsrError as err:
        print(f"bsr: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
