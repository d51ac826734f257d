"""`rightsdesk classifier` and `rightsdesk classify`: train, evaluate, try the model."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Column, Table

from rightsdesk.cli.common import (
    JsonFlag,
    app,
    desk_settings,
    err,
    fail,
    out,
    print_json,
    with_desk,
)

classifier_app = typer.Typer(
    help="Train and evaluate the request classifier.", no_args_is_help=True
)


ModelOption = Annotated[
    Path | None,
    typer.Option("--model", help="Model directory (default: [classifier] model_path or built-in)."),
]


def _model_dir(model: Path | None) -> Path:
    from classifiers.model import MODEL_DIR

    return model or desk_settings().classifier.model_path or MODEL_DIR


def _load_model(model: Path | None) -> Any:
    from classifiers.model import ModelMissing, RightsClassifier

    try:
        return RightsClassifier.load(_model_dir(model))
    except ModelMissing as exc:
        fail(str(exc), 2)


@classifier_app.command("train")
def classifier_train(
    architecture: Annotated[
        str,
        typer.Option(
            help="bow (bag of words), chars (with character trigrams) or ensemble (+ tok2vec)."
        ),
    ] = "bow",
    with_corrections: Annotated[
        bool,
        typer.Option(
            "--with-corrections", help="Also learn from the DPO's relabels in the database."
        ),
    ] = False,
    epochs: Annotated[int, typer.Option(min=1, help="Passes over the training data.")] = 20,
    model: ModelOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Train on classifiers/data (train split), tune thresholds on dev, save, report."""
    from classifiers.corrections import load_corrections
    from classifiers.dataset import DataError, load_examples
    from classifiers.training import evaluate, save, train

    if architecture not in ("bow", "chars", "ensemble"):
        fail(f"--architecture: expected bow, chars or ensemble, got {architecture!r}", 2)
    target = _model_dir(model)
    try:
        examples = load_examples()
    except DataError as exc:
        fail(f"training data: {exc}", 2)
    if with_corrections:
        corrections = with_desk(lambda desk: load_corrections(desk.db))
        err.print(f"{len(corrections)} correction(s) from the database", highlight=False)
        examples += corrections
    counts = {
        split: sum(ex.split == split for ex in examples) for split in ("train", "dev", "test")
    }
    err.print(
        f"training {architecture} on {counts['train']} examples "
        f"(dev {counts['dev']}, test {counts['test']})",
        highlight=False,
    )
    trained = train(examples, architecture, epochs, progress=lambda line: err.print(line))
    test = evaluate(trained.classifier, [ex for ex in examples if ex.split == "test"], "test")
    reports = [trained.dev, test]
    target.mkdir(parents=True, exist_ok=True)
    save(trained.classifier, target, reports)
    if as_json:
        print_json({"model": str(target), "reports": [r.as_dict() for r in reports]})
        return
    for report in reports:
        _print_report(report)
    out.print(f"saved to {target}", highlight=False)


HeldOutOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--heldout",
        exists=True,
        dir_okay=False,
        help="A held-out JSON lines file (id, lang, kind, subject, text, labels); repeatable.",
    ),
]


@classifier_app.command("eval")
def classifier_eval(
    split: Annotated[str, typer.Option(help="dev or test.")] = "test",
    heldout: HeldOutOption = None,
    merge_copy: Annotated[
        bool,
        typer.Option(
            "--merge-copy",
            help="Held-out only: count portability as access on both sides (for a set whose "
            "'copy' label covers exports).",
        ),
    ] = False,
    model: ModelOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Per-label precision, recall and F1, macro-F1 and exact-set accuracy on a fixed split, or
    (--heldout) on held-out files: per language and kind, review rate, dismissed requests.
    Held-out labels named otherwise are mapped onto ours (classifiers.heldout.LABEL_ALIASES:
    child_data → minor, copy → access)."""
    from classifiers.dataset import DataError, load_examples
    from classifiers.heldout import judge, load_heldout
    from classifiers.training import evaluate

    if split not in ("dev", "test"):
        fail(f"--split: expected dev or test, got {split!r}", 2)
    classifier = _load_model(model)
    if heldout:
        try:
            sets = {path.name: load_heldout(path) for path in heldout}
        except DataError as exc:
            fail(f"held-out data: {exc}", 2)
        judged = [judge(classifier, items, name, merge_copy) for name, items in sets.items()]
        if as_json:
            print_json([{"model_version": classifier.version, **r.as_dict()} for r in judged])
            return
        for found in judged:
            out.print("\n".join(found.lines()), highlight=False)
        return
    report = evaluate(classifier, [ex for ex in load_examples() if ex.split == split], split)
    if as_json:
        print_json(report.as_dict())
        return
    _print_report(report)


@classifier_app.command("retrain")
def classifier_retrain(
    heldout: HeldOutOption = None,
    epochs: Annotated[int, typer.Option(min=1, help="Passes over the training data.")] = 20,
    model: ModelOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Train with the DPO's corrections; replace the live model only if neither the test split
    nor any held-out set gets worse (else keep it and say why). A running service picks the
    new model up by itself within seconds (or at once on SIGHUP)."""
    from classifiers.corrections import load_corrections
    from classifiers.dataset import DataError, load_examples
    from classifiers.heldout import load_heldout
    from classifiers.retrain import retrain

    try:
        examples = load_examples()
        sets = {path.name: load_heldout(path) for path in heldout or []}
    except DataError as exc:
        fail(f"data: {exc}", 2)
    corrections = with_desk(lambda desk: load_corrections(desk.db))
    err.print(f"{len(corrections)} correction(s) from the database", highlight=False)
    target = _model_dir(model)
    outcome = retrain([*examples, *corrections], target, sets, progress=err.print, epochs=epochs)
    if as_json:
        print_json(
            {
                "replaced": outcome.replaced,
                "version": outcome.version,
                "old_version": outcome.old_version,
                "figures": {
                    name: {"old": vars(old) if old else None, "new": vars(new)}
                    for name, (old, new) in outcome.figures.items()
                },
                "reasons": outcome.reasons,
            }
        )
    else:
        for name, (old, new) in outcome.figures.items():
            was = f"{old.macro_f1:.3f} / {old.exact_match:.3f}" if old else "none"
            out.print(
                f"{name}: macro-F1 / exact {new.macro_f1:.3f} / {new.exact_match:.3f} "
                f"(live model: {was})",
                highlight=False,
            )
        if outcome.replaced:
            out.print(f"replaced the model at {target}: version {outcome.version}", highlight=False)
        else:
            out.print(f"kept the model at {target} ({outcome.old_version}):", highlight=False)
            for reason in outcome.reasons:
                out.print(f"  {reason}", highlight=False)
    if not outcome.replaced:
        raise typer.Exit(1)


@classifier_app.command("compare")
def classifier_compare(
    epochs: Annotated[int, typer.Option(min=1, help="Passes over the training data.")] = 20,
    heldout: HeldOutOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Train bow, chars and ensemble on the train split, and their calibrated combination;
    compare them on dev, test and any held-out file (quality, review rate, speed)."""
    from classifiers.compare import compare
    from classifiers.dataset import load_examples
    from classifiers.heldout import load_heldout

    sets = {path.name: load_heldout(path) for path in heldout or []}
    rows = [row.as_dict() for row in compare(load_examples(), sets, epochs, err.print)]
    if as_json:
        print_json(rows)
        return
    for row in rows:
        out.print(
            f"{row['name']}: trained in {row['train_seconds']} s, "
            f"{row['messages_per_second']} test messages/s",
            highlight=False,
        )
        for name, figures in row.items():
            if isinstance(figures, dict):
                shown = ", ".join(f"{key} {value}" for key, value in figures.items())
                out.print(f"  {name}: {shown}", highlight=False)


def _print_report(report: Any) -> None:
    table = Table(
        "label",
        Column("precision", justify="right"),
        Column("recall", justify="right"),
        Column("F1", justify="right"),
        Column("support", justify="right"),
        title=f"{report.split} split: {report.count} messages",
    )
    for score in report.labels:
        table.add_row(
            score.label,
            f"{score.precision:.3f}",
            f"{score.recall:.3f}",
            f"{score.f1:.3f}",
            str(score.support),
        )
    out.print(table)
    out.print(
        f"macro-F1 {report.macro_f1:.3f}  exact label set {report.exact_match:.3f}  "
        f"needs review {report.needs_review:.3f}",
        highlight=False,
    )
    for lang, figures in report.by_language.items():
        out.print(
            f"  {lang}: {figures['count']:.0f} messages, macro-F1 {figures['macro_f1']:.3f}, "
            f"exact {figures['exact_match']:.3f}",
            highlight=False,
        )


@app.command("classify")
def classify(
    jsonl: Annotated[
        bool, typer.Option("--jsonl", help='Read {"id", "subject", "text"} JSON lines on stdin.')
    ] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Lines classified together.")] = 256,
    model: ModelOption = None,
) -> None:
    """Classify messages: one JSON line out per line in, in input order, streaming.

    A line that is not a JSON object gets {"id": null, "error": ...} in its place.
    """
    if not jsonl:
        fail("only --jsonl is supported: pipe JSON lines on stdin", 2)
    classifier = _load_model(model)
    batch: list[tuple[Any, dict[str, Any] | str]] = []
    for number, line in enumerate(sys.stdin, 1):
        if not line.strip():
            continue
        batch.append(_classify_input(number, line))
        if len(batch) >= batch_size:
            _classify_batch(classifier, batch)
            batch = []
    _classify_batch(classifier, batch)


def _classify_input(number: int, line: str) -> tuple[Any, dict[str, Any] | str]:
    try:
        item = json.loads(line)
    except json.JSONDecodeError as exc:
        return None, f"line {number}: not JSON ({exc.msg})"
    if not isinstance(item, dict):
        return None, f"line {number}: expected a JSON object"
    if not isinstance(item.get("text", ""), str) or not isinstance(item.get("subject", ""), str):
        return item.get("id"), f"line {number}: subject and text must be strings"
    return item.get("id"), item


def _classify_batch(classifier: Any, batch: list[tuple[Any, dict[str, Any] | str]]) -> None:
    valid = [item for _, item in batch if isinstance(item, dict)]
    predictions = iter(
        classifier.predict_many((i.get("subject") or "", i.get("text") or "") for i in valid)
    )
    lines = []
    for id_, item in batch:
        if isinstance(item, str):
            lines.append(json.dumps({"id": id_, "error": item}, ensure_ascii=False))
        else:
            lines.append(json.dumps(next(predictions).as_json(id_), ensure_ascii=False))
    if lines:
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()
