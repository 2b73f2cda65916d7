"""The `bsr` command: one verb per pipeline stage. Each verb is a thin call into the module of the same name."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bsr import RESIZE_CONVENTION, BsrError, __version__


def cmd_download(args):
    from bsr.download import download_dataset

    spec = {"source": args.source, "subdir": args.subdir, "files": args.files, "images": args.images,
            "sha256": args.sha256, "max_bytes": args.max_bytes}
    n = download_dataset(args.name, spec, args.out, args.lock, args.cache)
    print(f"{args.name}: {n} images in {args.out}")


def cmd_degrade(args):
    from bsr.degrade import degrade_dir

    n = degrade_dir(args.hr, args.out, args.scale, args.kind)
    print(f"degraded {n} images ({args.kind} x{args.scale}) into {args.out}")


def cmd_eval_bicubic(args):
    from bsr.evaluate import eval_bicubic

    print(json.dumps(eval_bicubic(args.hr, args.scale, args.kind, args.out, args.space, args.sample)))


def cmd_score(args):
    from bsr.score import score

    print(json.dumps(score(args.sr, args.hr, args.scale, args.out, args.match, args.space, args.kind, args.dataset,
                           args.method)))


def cmd_pic(args):
    from bsr.pic import check_patch, write_tables
    from bsr.sampling import check_plot_patch, plot_balance

    check_patch(args.patch)
    if args.plot:
        check_plot_patch(args.lr, args.patch)
    n = write_tables(args.lr, args.out, args.reduce)
    print(f"wrote {n} PIC summed-area tables ({args.reduce}) into {args.out}")
    if args.plot:
        plot_balance(args.lr, args.out, args.reduce, args.plot, patch=args.patch, seed=args.seed)
        print(f"wrote {args.plot}")


def cmd_model_info(args):
    from bsr.config import experiment_from_file
    from bsr.model import build_model, model_info

    info = model_info(build_model(experiment_from_file(args.config, args.experiment)["model"], args.scale))
    print(f"conv_layers={info['conv_layers']} params={info['params']}")


def cmd_experiment_config(args):
    from bsr.config import load_pipeline, resolve_experiment, write_experiment

    write_experiment(resolve_experiment(load_pipeline(args.config), args.experiment, args.config), args.out)
    print(f"wrote {args.out}")


def cmd_train(args):
    from bsr.config import experiment_from_file
    from bsr.train import train

    cfg = experiment_from_file(args.config, args.experiment)
    summary = train(cfg, args.out, resume=args.resume)
    if summary is not None:  # None on the ranks of a torchrun launch other than rank 0
        print(json.dumps(summary))


def cmd_evaluate(args):
    from bsr.evaluate import evaluate_run

    print(json.dumps(evaluate_run(args.run, args.hr, args.lr, args.dataset, args.out, args.sample, args.space,
                                  args.tile, args.self_ensemble, args.device)))


def cmd_aggregate(args):
    from bsr.aggregate import aggregate
    from bsr.config import load_pipeline

    summary = aggregate(load_pipeline(args.config), args.experiment, args.out)
    print(f"wrote {args.out}: {summary['replicates']} replicates of {args.experiment}")


def cmd_upscale(args):
    from bsr.upscale import upscale_files

    written = upscale_files(args.model, args.input, args.out, args.tile, args.overlap, args.self_ensemble,
                            args.device)
    print(f"wrote {len(written)} images into {args.out}")


def cmd_export(args):
    from bsr.export import export_onnx

    scale = export_onnx(args.model, args.onnx)
    print(f"wrote {args.onnx}: ONNX, input lr float32 RGB NCHW in [0, 1] of any size, output sr x{scale}, not "
          "clamped (it overshoots [0, 1] at edges): clip it to [0, 1] before converting to 8 bits")


def cmd_report(args):
    from bsr.config import load_pipeline
    from bsr.report import write_report

    for path in write_report(load_pipeline(args.config), args.config, args.out):
        print(f"wrote {path}")


def cmd_dvc_yaml(args):
    from bsr.config import load_pipeline
    from bsr.dvc_stages import dvc_yaml, dvc_yaml_path
    from bsr.files import write_text
    from bsr.stages import sharing_lineage
    from bsr.variants import check_owners, claim_folders

    cfg = load_pipeline(args.config)
    check_owners(cfg, args.config)
    # A variant's stages depend on the outputs of the stages it shares, which its parents' files declare.
    for parent, path in reversed(sharing_lineage(cfg, args.config)[1:]):
        parent_out, text = dvc_yaml_path(path), dvc_yaml(parent, path)
        if not Path(parent_out).is_file():
            write_text(parent_out, text)
            print(f"wrote {parent_out}")
        elif Path(parent_out).read_text() != text:
            raise BsrError(f"{parent_out}: not what {path} gives, which {args.config}'s stages depend on: "
                           f"regenerate it with `bsr dvc-yaml --config {path}`")
    out = args.out or dvc_yaml_path(args.config)
    write_text(out, dvc_yaml(cfg, args.config, out))
    claim_folders(cfg, args.config)
    print(f"wrote {out}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bsr", description=__doc__)
    parser.add_argument("--version", action="version", version=f"bsr {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name, func, help, inputs=(), outputs=(), folders=()):
        """`inputs` and `outputs`: the destinations of the verb's path arguments, which `main` checks against
        each other before the verb runs (`check_paths`); `folders`: the outputs that are folders."""
        p = verbs.add_parser(name, help=help, description=help)
        p.set_defaults(func=func, inputs=inputs, outputs=outputs, folders=folders)
        return p

    def degradation_args(p):
        p.add_argument("--hr", required=True, help="directory of HR PNG/BMP images")
        p.add_argument("--scale", required=True, type=int, choices=range(2, 9), metavar="S", help="integer scale")
        p.add_argument("--kind", required=True, choices=["BI", "BD"], help="BI: bicubic down; BD: blur, subsample")
        p.add_argument("--convention", default=RESIZE_CONVENTION, choices=[RESIZE_CONVENTION],
                       help="the resize convention (MATLAB's imresize on uint8, rounded after each pass); the "
                            "pipeline names it so that jobs made under another rerun")

    p = verb("download", cmd_download, "fetch a dataset (https://, file://, package://), or check one placed by "
             "hand (manual://), into a folder of HR images", inputs=("source",), outputs=("out",),
             folders=("out",))
    p.add_argument("--name", required=True, help="dataset name (the key in datasets.lock)")
    p.add_argument("--source", required=True,
                   help="https://, file:// (archive or folder), package://MODULE/DIR or manual://DIR (images you placed)")
    p.add_argument("--max-bytes", type=int, help="most bytes an archive may expand to (default 20 GiB)")
    p.add_argument("--subdir", default="", help="folder inside the archive or source holding the images")
    p.add_argument("--files", nargs="*", help="take only these files (folder sources)")
    p.add_argument("--images", required=True, type=int, help="expected number of images")
    p.add_argument("--sha256", help="expected sha256; without it the lock file's record is enforced")
    p.add_argument("--lock", required=True, help="datasets.lock, where first downloads record their sha256")
    p.add_argument("--cache", required=True, help="download cache folder (partial downloads resume from it)")
    p.add_argument("--out", required=True, help="dataset folder (appears only when complete)")

    p = verb("degrade", cmd_degrade, "write the LR image of every HR image (same file stems, PNG)", inputs=("hr",),
             outputs=("out",), folders=("out",))
    degradation_args(p)
    p.add_argument("--out", required=True, help="output directory (replaced atomically)")

    p = verb("eval-bicubic", cmd_eval_bicubic, "score the bicubic baseline of a test set", inputs=("hr",),
             outputs=("out", "sample"))
    degradation_args(p)
    p.add_argument("--out", required=True, help="summary JSON; the per-image CSV is written beside it")
    p.add_argument("--space", default="y", choices=["y", "rgb"], help="PSNR/SSIM on BT.601 Y (default) or RGB")
    p.add_argument("--sample", help="also save the bicubic upscale of the set's first image here (PNG)")

    p = verb("score", cmd_score, "score another method's SR images of a test set against its HR images, as "
             "evaluation does (summary JSON + per-image CSV)", inputs=("sr", "hr"), outputs=("out",))
    p.add_argument("--sr", required=True, help="folder of the method's SR images (PNG/BMP)")
    p.add_argument("--hr", required=True, help="folder of the test set's HR images (PNG/BMP)")
    p.add_argument("--scale", required=True, type=int, choices=range(2, 9), metavar="S", help="integer scale")
    p.add_argument("--kind", default="BI", choices=["BI", "BD"], help="the degradation the SR images come from, "
                   "recorded in the summary (default BI)")
    p.add_argument("--match", default="{stem}", metavar="PATTERN",
                   help="an SR file's stem from its HR image's {stem} and the {scale}, such as "
                   "'{stem}_RCAN_x{scale}' (default '{stem}')")
    p.add_argument("--dataset", help="test set name for the summary (default: the --hr folder's name)")
    p.add_argument("--method", help="the method that wrote the SR images, for the summary")
    p.add_argument("--out", required=True, help="summary JSON; the per-image CSV is written beside it")
    p.add_argument("--space", default="y", choices=["y", "rgb"], help="PSNR/SSIM on BT.601 Y (default) or RGB")

    p = verb("pic", cmd_pic, "precompute PIC summed-area tables of LR training images (.npy per image)",
             inputs=("lr",), outputs=("out", "plot"), folders=("out",))
    p.add_argument("--lr", required=True, help="directory of LR images")
    p.add_argument("--out", required=True, help="output directory (replaced atomically)")
    p.add_argument("--reduce", default="sum", choices=["sum", "max"], help="over colour channels (default sum)")
    p.add_argument("--plot", help="also draw the PIC histogram of uniform crops against RFS batches (PNG)")
    p.add_argument("--patch", type=int, default=48, help="LR patch size for --plot (default 48)")
    p.add_argument("--seed", type=int, default=0, help="seed for --plot (default 0)")

    p = verb("model-info", cmd_model_info, "print the conv layer and parameter counts of a model config")
    p.add_argument("--config", required=True, help="pipeline config (config/config.yaml) or experiment config")
    p.add_argument("--experiment", help="which experiment of a pipeline config (default: the first)")
    p.add_argument("--scale", required=True, type=int, choices=[2, 3, 4])

    p = verb("experiment-config", cmd_experiment_config,
             "write one experiment of a pipeline config, resolved (defaults and base merged, data paths added)",
             inputs=("config",), outputs=("out",))
    p.add_argument("--config", required=True, help="pipeline config")
    p.add_argument("--experiment", required=True, help="the experiment's key in the config")
    p.add_argument("--out", required=True, help="experiment config to write (what `bsr train --config` reads)")

    p = verb("train", cmd_train, "train one experiment", inputs=("config",), outputs=("out",), folders=("out",))
    p.add_argument("--config", required=True, help="experiment config, or pipeline config with --experiment")
    p.add_argument("--experiment", help="which experiment of a pipeline config")
    p.add_argument("--out", required=True, help="run directory: checkpoint, metrics, final model")
    p.add_argument("--resume", nargs="?", const="yes", default="no", choices=["no", "yes", "auto"],
                   help="continue from the run directory's checkpoint; 'auto': if it exists and matches the config")

    p = verb("evaluate", cmd_evaluate, "score a trained model on a test set (summary JSON + per-image CSV)",
             inputs=("run", "hr", "lr"), outputs=("out", "sample"))
    p.add_argument("--run", required=True, help="run directory written by `bsr train`")
    p.add_argument("--hr", required=True, help="HR test images")
    p.add_argument("--lr", help="LR test images from `bsr degrade` (default: degrade on the fly)")
    p.add_argument("--dataset", required=True, help="test set name (for MLflow and the summary)")
    p.add_argument("--out", required=True, help="summary JSON; the per-image CSV is written beside it")
    p.add_argument("--sample", help="also save the SR of the set's first image here (PNG)")
    p.add_argument("--space", default="y", choices=["y", "rgb"])
    p.add_argument("--tile", type=int, help="score an LR image of more than N×N pixels through N×N tiles that "
                   "overlap by the model's receptive radius, which changes no score (default 1024; 0: never)")
    p.add_argument("--self-ensemble", action="store_true",
                   help="score the ×8 self-ensemble (\"+\"): the mean over the 8 flips/rotations of the input")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="auto (default): CUDA if there is a GPU; the pipeline passes cpu for device: cpu experiments")

    p = verb("aggregate", cmd_aggregate, "summarise an experiment's replicates (mean and seed sd per test set and "
             "metric) in a JSON file and on the experiment's MLflow parent run", inputs=("config",), outputs=("out",))
    p.add_argument("--config", required=True, help="pipeline config")
    p.add_argument("--experiment", required=True, help="an experiment with replicates: N >= 2")
    p.add_argument("--out", required=True, help="summary JSON")

    p = verb("upscale", cmd_upscale, "super-resolve an image, or every image of a folder, into PNGs of the same stems",
             inputs=("model", "input"), outputs=("out",), folders=("out",))
    p.add_argument("--model", required=True,
                   help="run folder written by `bsr train` (a model folder: model.safetensors + model.json), or an MLflow model URI (runs:/ID/model, "
                   "models:/NAME@ALIAS, ...: looked up in $MLFLOW_TRACKING_URI, else ./mlflow.db)")
    p.add_argument("--in", dest="input", required=True,
                   help="a PNG, BMP or JPEG image (a photo: its EXIF orientation is applied), or a folder of them")
    p.add_argument("--out", required=True, help="output folder (created; each PNG is written atomically)")
    p.add_argument("--tile", type=int, help="LR tile side for images of more than N×N pixels "
                   "(default 256 on CPU, 512 on CUDA; 0: whole images)")
    p.add_argument("--overlap", type=int, help="LR pixels of context dropped around each tile (default 32)")
    p.add_argument("--self-ensemble", action="store_true", help="average over the 8 flips/rotations (×8 time)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])

    p = verb("export", cmd_export, "write a trained model as one ONNX file (input and output sizes left free)",
             inputs=("model",), outputs=("onnx",))
    p.add_argument("--model", required=True,
                   help="run folder written by `bsr train` (a model folder: model.safetensors + model.json), or an MLflow model URI (as for upscale)")
    p.add_argument("--onnx", required=True, help="ONNX file to write (atomically)")

    p = verb("report", cmd_report, "render the tables (tables.md, .html, .tex and a standalone .tex) and the figures",
             inputs=("config",), outputs=("out",), folders=("out",))
    p.add_argument("--config", required=True, help="pipeline config")
    p.add_argument("--out", help="report folder (default: reports/<the config's name>)")

    p = verb("dvc-yaml", cmd_dvc_yaml, "generate dvc.yaml from a pipeline config (the same DAG as Snakemake); for a "
             "variant, its parent's too when missing",
             inputs=("config",), outputs=("out",))
    p.add_argument("--config", required=True, help="pipeline config, relative to the project folder")
    p.add_argument("--out", help="default: dvc.yaml for config/config.yaml, else config/<stem>/dvc.yaml")
    return parser


def check_paths(args) -> None:
    """No output of the verb may be, hold or lie inside one of its inputs, and no file output may replace a
    folder nor land in a folder that another verb wrote (a test set, a run), whatever the verb. Each verb
    checks its folder outputs further, as it knows what it writes."""
    from bsr.files import check_against_inputs, check_output, check_writer

    def given(names):
        return [path for name in names if (value := getattr(args, name))
                for path in (value if isinstance(value, list) else [value])]
    check_against_inputs(given(args.outputs), given(args.inputs))
    for path in given([name for name in args.outputs if name not in args.folders]):
        check_output(path)
        check_writer(Path(path).absolute().parent, args.verb)


def main(argv: list[str] | None = None) -> int:
    from bsr.files import sigterm_raises

    args = build_parser().parse_args(argv)
    if getattr(args, "config", None):  # as the jobs name it, however it is spelt (bsr.config.project_path)
        from bsr.config import project_path

        args.config = project_path(args.config)
    try:
        with sigterm_raises():  # so that a cancelled verb removes its temporary files
            check_paths(args)
            args.func(args)
    except BsrError as err:
        print(f"bsr: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM during training
        print(f"bsr: stopped by {err or 'Ctrl-C'}; outputs written so far are complete, checkpoints resume",
              file=sys.stderr)
        return getattr(err, "exit_code", 130)
    return 0


if __name__ == "__main__":
    sys.exit(main())
