"""Issue #14: judging on held-out files, `classifier retrain` (replaces the live model only when
nothing gets worse), the version on each ticket's classification, and reloading a new model
without a restart."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from classifiers.dataset import load_examples
from classifiers.heldout import judge, load_heldout
from classifiers.model import META_FILE, MODEL_DIR, LazyRightsClassifier, RightsClassifier
from classifiers.retrain import retrain
from rightsdesk.cli import app
from rightsdesk.config import Settings
from rightsdesk.service import Desk, model_version
from tests.conftest import deliver, mail

LINES = [
    {"id": "a1", "lang": "zh", "kind": "short", "subject": "", "text": "请注销我的账号",
     "labels": ["account_deletion"]},
    {"id": "a2", "lang": "en", "kind": "short", "subject": "", "text": "How do I mute a call?",
     "labels": ["not_rights_request"]},
    {"id": "a3", "lang": "en", "kind": "short", "subject": "Data", "text": "close my account pls",
     "labels": ["account_deletion"]},
]  # fmt: skip


@pytest.fixture
def heldout_file(tmp_path: Path) -> Path:
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(json.dumps(line, ensure_ascii=False) for line in LINES), "utf-8")
    return path


@pytest.fixture
def model_copy(tmp_path: Path, model: RightsClassifier) -> Path:
    target = tmp_path / "live"
    shutil.copytree(MODEL_DIR, target)
    return target


def test_a_heldout_file_is_judged_per_language_and_kind(
    model: RightsClassifier, heldout_file: Path
) -> None:
    items = load_heldout(heldout_file)
    assert [item.kind for item in items] == ["short"] * 3
    report = judge(model, items, "mine")
    assert report.count == 3
    assert {"lang:zh", "lang:en", "kind:short", "zh/short", "en/short"} <= set(report.parts)
    assert report.exact_match == 1.0, report.misses
    assert report.dismissed == []
    assert 0.0 <= report.review_rate <= 1.0


def test_classifier_eval_heldout_prints_json(model: RightsClassifier, heldout_file: Path) -> None:
    result = CliRunner().invoke(
        app, ["classifier", "eval", "--heldout", str(heldout_file), "--json"]
    )
    assert result.exit_code == 0, result.stderr
    [report] = json.loads(result.stdout)
    assert report["name"] == "mine.jsonl"
    assert report["model_version"] == model.version
    assert set(report) >= {"macro_f1", "exact_match", "review_rate", "dismissed", "parts"}


def test_retrain_keeps_the_live_model_when_the_candidate_is_worse(
    model_copy: Path, heldout_file: Path
) -> None:
    before = (model_copy / META_FILE).read_bytes()
    examples = load_examples()
    # A candidate that learned from a sliver of the data: worse on test, so it is refused.
    sliver = [ex for ex in examples if ex.split == "train"][::15] + [
        ex for ex in examples if ex.split != "train"
    ]
    outcome = retrain(sliver, model_copy, {"mine": load_heldout(heldout_file)}, epochs=1)
    assert not outcome.replaced
    assert any(reason.startswith("test:") for reason in outcome.reasons)
    assert (model_copy / META_FILE).read_bytes() == before


def test_retrain_installs_a_model_where_there_was_none(tmp_path: Path) -> None:
    examples = load_examples()
    sample = [ex for ex in examples if ex.split == "train"][::10] + [
        ex for ex in examples if ex.split != "train"
    ]
    target = tmp_path / "fresh"
    outcome = retrain(sample, target, {}, epochs=1)
    assert outcome.replaced
    assert RightsClassifier.load(target).version == outcome.version
    assert not any(path.name.startswith(".") for path in tmp_path.iterdir())  # no leftovers


def test_a_new_model_is_picked_up_without_a_restart(model_copy: Path) -> None:
    lazy = LazyRightsClassifier(model_copy, check_seconds=3600)
    first = lazy.classify("", "请注销我的账号").model_version
    meta_path = model_copy / META_FILE
    meta = json.loads(meta_path.read_text("utf-8"))
    meta["version"] = "newversion01"
    meta_path.write_text(json.dumps(meta), "utf-8")
    stat = meta_path.stat()
    os.utime(meta_path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert lazy.reload()  # what SIGHUP does; the periodic check does the same in a thread
    assert lazy.classify("", "请注销我的账号").model_version == "newversion01" != first
    assert not lazy.reload()  # nothing new since


def test_a_broken_model_leaves_the_old_one_serving(model_copy: Path) -> None:
    lazy = LazyRightsClassifier(model_copy, check_seconds=3600)
    version = lazy.model.version
    (model_copy / META_FILE).write_text("{not json", "utf-8")
    assert not lazy.reload()
    assert lazy.model.version == version


async def test_each_tickets_classification_records_the_model_version(
    settings: Settings, model: RightsClassifier
) -> None:
    enabled = settings.model_copy(
        update={"classifier": settings.classifier.model_copy(update={"enabled": True})}
    )
    desk = Desk.build(enabled)
    try:
        await deliver(desk, mail("请注销我的账号", subject="注销账号"))
        [ticket] = await desk.tickets.find()
        assert ticket.classification is not None
        assert ticket.classification["model_version"] == model.version
        # `rightsdesk status` names the same version (it showed a digest of the file before).
        assert model_version(desk).endswith(f" {model.version}")
    finally:
        await desk.close()


def test_classifier_retrain_command_says_why_it_kept_the_model(
    database_url: str, tmp_path: Path, model_copy: Path, heldout_file: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[database]\nurl = "{database_url}"\n', "utf-8")
    result = CliRunner().invoke(
        app,
        [
            *("--config", str(config), "classifier", "retrain", "--epochs", "1"),
            *("--heldout", str(heldout_file), "--model", str(model_copy), "--json"),
        ],
    )
    assert result.exit_code == 1, result.stderr  # one epoch is worse than the live model
    found = json.loads(result.stdout)
    assert found["replaced"] is False
    assert found["reasons"]
    assert set(found["figures"]) == {"test", "mine.jsonl"}
    assert "0 correction(s)" in result.stderr
